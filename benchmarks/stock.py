"""The stock-strategy benchmark: real HTTP purchases, every strategy side by side in one run.

``uv run shop bench`` (or ``uv run python -m benchmarks.stock``) starts the shop (granian with
N workers + the SAQ worker) once per strategy on the embedded servers under ``--data-dir``
(or the servers named by SHOP_DATABASE_URL / SHOP_REDIS_URL), creates options and buyer
accounts, and drives ``POST /api/orders`` from a separate load-generator process:

- ``hot``     everyone races for one option (stock large enough not to run out);
- ``spread``  purchases spread over many options;
- ``sellout`` more buyers than units: exactly ``stock`` purchases may succeed.

The same run, with the same load generator (wrk when installed, else ``benchmarks.loadgen``),
measures the references: a bare Litestar app on granian with the same worker count
(``benchmarks.bare_app``: ``GET /ping`` and a PyJWT-verified GET) and the shop's own trivial
authenticated GET (``/api/auth/whoami``, the ceiling). Every saturated figure has a sequential
one beside it (one connection: the latency of one request on an idle server), and the CPU
share of each server process (granian workers, PostgreSQL, Redis) while saturated. The
``ratios`` block puts them against the issue's targets. After each scenario the audit
(``benchmarks.audit``) waits until the stores have settled, then checks that PostgreSQL, the
strategy's own view (the Redis counter for ``counter``) and the ledger (stock_total − live
order lines − held reservations) agree, and that nothing was oversold. A run whose audit fails
keeps its whole ledger, reservations and order statuses in the results and on the console.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text

from benchmarks import wrk
from benchmarks.audit import OK, OVERSOLD, Audit, audit
from benchmarks.loadgen import Spec
from benchmarks.scrape import save_metrics
from shop.adapters.db import migrations
from shop.bootstrap import (
    STOCK_STRATEGIES,
    Container,
    jwt_secret_of,
    require_urls,
    resolve_services,
)
from shop.config import Settings, load_settings
from shop.domain.identity.model import Principal, Role
from shop.entrypoints.cli.server import api_command, metrics_environment

SCENARIOS = ("hot", "spread", "sellout")
# Every registered strategy, in the registry's order (a new one is benchmarked unasked).
STRATEGIES = tuple(STOCK_STRATEGIES)
# Generous: each reading scans every open reservation, which grows with a reused data dir.
SETTLE_TIMEOUT = 60.0
# redlock on a hot option before issue 16 (wrk, 64 connections, 2 workers): the "2x" target.
REDLOCK_HOT_BEFORE = 261.0
SEQUENTIAL_S = 3.0
console = Console(width=None if sys.stdout.isatty() else 200)


@dataclass
class BenchConfig:
    strategies: Sequence[str] = STRATEGIES
    scenarios: Sequence[str] = SCENARIOS
    workers: Sequence[int] = (2,)
    concurrency: int = 64
    duration: float = 10.0
    sellout_stock: int = 200
    sellout_buyers: int = 1000
    spread_options: int = 500
    buyers: int = 200
    port: int = 8799
    data_dir: str = ".shop-bench"
    out: Path = Path("benchmarks/results/latest.json")
    chart: bool = True
    # "auto": wrk when installed, else the aiohttp generator; "aiohttp" forces the fallback.
    generator: str = "auto"
    sequential_s: float = SEQUENTIAL_S


@dataclass
class Run:
    strategy: str
    scenario: str
    workers: int
    purchases_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    timeouts: int
    sold: int
    stock: int
    oversold: int
    consistent: bool
    ratio_to_ceiling: float
    client_cpu_fraction: float
    client_bound: bool
    server_rss_mb_max: float
    requests: int
    generator: str = "aiohttp"
    sequential_p50_ms: float = 0.0
    sequential_per_s: float = 0.0
    # CPU % (of one core) of each server process while saturated: granian workers, PG, Redis.
    cpu_percent: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    drift: list[dict[str, Any]] = field(default_factory=list)
    settled: bool = True
    # ``benchmarks.audit.Audit.report()``: the verdict, and unless ``ok`` the whole ledger.
    audit: dict[str, Any] = field(default_factory=dict)


def failed_runs(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs whose audit did not pass: oversold, drift, or never settled."""
    return [r for r in report["runs"] if r["oversold"] or r["audit"].get("verdict", OK) != OK]


def _percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return round(ordered[index], 2)


# ---------------------------------------------------------------------------------------------
# The server under test
# ---------------------------------------------------------------------------------------------


@contextmanager
def serving(
    settings: Settings, *, strategy: str, workers: int, port: int
) -> Iterator[list[psutil.Process]]:
    """granian (N workers) + the SAQ worker, with the given strategy; stopped on exit."""
    database_url, redis_url = require_urls(settings)
    env = {
        **os.environ,
        "SHOP_DATABASE_URL": database_url,
        "SHOP_REDIS_URL": redis_url,
        "SHOP_DATA_DIR": str(settings.data_path),
        "SHOP_STOCK_STRATEGY": strategy,
        "SHOP_LOG_LEVEL": "WARNING",
        "SHOP_STOCK_SYNC_INTERVAL": "1",
        "SHOP_DATABASE_POOL_SIZE": "20",
        "SHOP_DATABASE_MAX_OVERFLOW": "0",
        # The throttle stays on (its Redis round trip is part of every request's real cost),
        # with a per-user quota no benchmark buyer reaches.
        "SHOP_RATE_LIMIT_USER": "10000000/minute",
        **metrics_environment(settings.data_path),
    }
    api = subprocess.Popen(api_command("127.0.0.1", port, workers), env=env)
    worker = subprocess.Popen([sys.executable, "-m", "shop.entrypoints.workers"], env=env)
    try:
        yield _up(api, f"http://127.0.0.1:{port}/health")
    finally:
        for child in (api, worker):
            child.terminate()
        for child in (api, worker):
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()


def _up(server: subprocess.Popen[bytes], url: str) -> list[psutil.Process]:
    """Wait until ``url`` answers; the granian master and its workers."""
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.2)
    return [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]


@contextmanager
def bare_serving(secret: str, *, workers: int, port: int) -> Iterator[list[psutil.Process]]:
    """The bare-stack reference app on granian, with the flags the shop runs with."""
    command = [
        part if part != "shop.entrypoints.http.app:create_app" else "benchmarks.bare_app:app"
        for part in api_command("127.0.0.1", port, workers)
        if part != "--factory"
    ]
    env = {**os.environ, "BENCH_JWT_SECRET": secret}
    server = subprocess.Popen(command, env=env)
    try:
        yield _up(server, f"http://127.0.0.1:{port}/ping")
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def _listener(url: str | None, default_port: int) -> list[psutil.Process]:
    """The process listening on a server URL's port, with its children (PostgreSQL backends)."""
    if not url:
        return []
    parts = urlsplit(url)
    port = parts.port or default_port
    socket_dir = parse_qs(parts.query).get("host", [""])[0]
    if socket_dir.startswith("/"):
        # A PostgreSQL on a Unix socket (the embedded one): its lock file names the postmaster.
        try:
            lock = Path(socket_dir, f".s.PGSQL.{port}.lock").read_text().split()
            parent = psutil.Process(int(lock[0]))
            return [parent, *parent.children(recursive=True)]
        except (OSError, IndexError, ValueError, psutil.Error):
            return []
    try:
        pids = {
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
        }
    except psutil.Error:  # not allowed to see other processes' sockets: no figure, no failure
        return []
    processes = []
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            processes += [parent, *parent.children(recursive=True)]
        except psutil.Error:
            continue
    return processes


class CpuSampler:
    """CPU % of one core used by each server process between enter and exit.

    The app's granian workers are reported one by one (``worker 1``, ``worker 2``: the issue's
    question is whether each is saturated); PostgreSQL (all backends) and Redis as totals.
    PostgreSQL's backends come and go, so they are listed again at exit.
    """

    def __init__(self, workers: Sequence[psutil.Process], settings: Settings | None = None) -> None:
        self._workers = list(workers)
        self._settings = settings
        self.percent: dict[str, float] = {}

    def _groups(self) -> dict[str, list[psutil.Process]]:
        groups: dict[str, list[psutil.Process]] = {
            f"worker {n}": [p] for n, p in enumerate(self._workers, 1)
        }
        if self._settings is not None:
            groups["postgres"] = _listener(self._settings.database_url, 5432)
            groups["redis"] = _listener(self._settings.redis_url, 6379)
        return groups

    @staticmethod
    def _seconds(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    @staticmethod
    def _pressure_us() -> int | None:
        """Linux PSI: microseconds in which some runnable task waited for a CPU."""
        try:
            line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
            return int(line.rsplit("total=", 1)[1])
        except (OSError, IndexError, ValueError):
            return None

    def __enter__(self) -> CpuSampler:
        self._pressure = self._pressure_us()
        self._started = time.monotonic()
        self._before = {p.pid: self._seconds(p) for g in self._groups().values() for p in g}
        return self

    def __exit__(self, *_: object) -> None:
        elapsed = time.monotonic() - self._started
        for name, processes in self._groups().items():
            used = sum(self._seconds(p) - self._before.get(p.pid, 0.0) for p in processes)
            self.percent[name] = round(100 * used / elapsed, 1) if elapsed else 0.0
        # Not a process: the share of the run in which runnable work waited for a core. On a
        # shared machine, workers "at 30 % CPU" under a high figure here are starved, not idle.
        pressure = self._pressure_us()
        if pressure is not None and self._pressure is not None and elapsed:
            self.percent["cpu pressure"] = round((pressure - self._pressure) / 1e4 / elapsed, 1)


class RssSampler:
    """Peak RSS of each app worker process while the load runs."""

    def __init__(self, processes: Sequence[psutil.Process]) -> None:
        self._processes = processes
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for process in self._processes:
                try:
                    self.peak_mb = max(self.peak_mb, process.memory_info().rss / 2**20)
                except psutil.Error:
                    continue
            self._stop.wait(0.25)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


async def insert_buyers(container: Container, count: int, *, label: str) -> list[uuid.UUID]:
    """``count`` real customer rows (orders reference them), in one statement."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with container.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO user_account (id, email, password_hash, name, role) "
                "SELECT u, :label || '-' || u::text || '@example.test', 'x', 'Buyer', 'customer' "
                "FROM unnest(CAST(:ids AS uuid[])) AS u"
            ),
            {"ids": ids, "label": label},
        )
    return ids


async def _make_buyers(container: Container, count: int) -> list[str]:
    """Real user rows and access tokens minted with the server's key."""
    ids = await insert_buyers(container, count, label="bench")
    return [
        container.access_tokens.issue(Principal(user_id=user_id, role=Role.CUSTOMER))[0]
        for user_id in ids
    ]


async def _make_options(container: Container, count: int, units: int) -> list[int]:
    async with container.engine.begin() as conn:
        product_id = (
            await conn.execute(
                text("INSERT INTO product (name, price) VALUES ('Bench item', 1000) RETURNING id")
            )
        ).scalar_one()
        rows = await conn.execute(
            text(
                "INSERT INTO option (product_id, name, price, stock_total, stock) "
                "SELECT :product_id, 'size ' || n, 1000, 0, 0 FROM generate_series(1, :count) n "
                "RETURNING id"
            ),
            {"product_id": product_id, "count": count},
        )
        option_ids = [int(row[0]) for row in rows]
    for option_id in option_ids:
        await container.stock.put_on_sale(option_id, units)
    return option_ids


# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------


def _drive(
    spec: Spec, progress: Progress, label: str, expected_s: float, generator: str = "auto"
) -> dict[str, Any]:
    """Run the load generator in its own process, with a progress bar while it works.

    wrk when installed (and the load is timed, not counted), else the aiohttp generator; the
    result says which (``generator``) and carries p50/p95/p99 either way.
    """
    binary = wrk.available() if generator == "auto" and spec.duration is not None else None
    if binary is not None:
        task = progress.add_task(label + " (wrk)", total=None)
        result = wrk.run(spec, binary)
        progress.update(task, total=expected_s, completed=expected_s)
        return result
    result = _drive_aiohttp(spec, progress, label, expected_s)
    latencies: list[float] = result.pop("latencies_ms")
    result.update(
        generator="aiohttp",
        p50_ms=_percentile(latencies, 50),
        p95_ms=_percentile(latencies, 95),
        p99_ms=_percentile(latencies, 99),
    )
    return result


def _drive_aiohttp(spec: Spec, progress: Progress, label: str, expected_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp, "spec.json"), Path(tmp, "out.json")
        spec_path.write_text(json.dumps(asdict(spec)))
        task = progress.add_task(label, total=expected_s)
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loadgen", str(spec_path), str(out_path)]
        )
        started = time.monotonic()
        while child.poll() is None:
            progress.update(task, completed=min(expected_s, time.monotonic() - started))
            time.sleep(0.1)
        progress.update(task, completed=expected_s)
        if child.returncode != 0:
            raise RuntimeError(f"load generator failed ({child.returncode})")
        return dict(json.loads(out_path.read_text()))


def _summarise(
    result: dict[str, Any],
    *,
    strategy: str,
    scenario: str,
    workers: int,
    stock: int,
    check: Audit,
    ceiling: float,
    rss: float,
) -> Run:
    statuses: dict[str, int] = result["statuses"]
    created = statuses.get("201", 0)
    rate = created / result["elapsed_s"] if result["elapsed_s"] else 0.0
    # More 201s than units in a sell-out is an oversell whatever the ledger says.
    answered_over = max(0, created - stock) if scenario == "sellout" else 0
    if answered_over and check.verdict != OVERSOLD:
        check.verdict = OVERSOLD
        check.reason = f"{created} purchases answered 201 for {stock} units; {check.reason}"
    # A sold-out answer (409) is a correct outcome, not an error.
    errors = (
        sum(n for code, n in statuses.items() if code not in ("201", "409"))
        + result["transport_errors"]
    )
    return Run(
        strategy=strategy,
        scenario=scenario,
        workers=workers,
        purchases_per_s=round(rate, 1),
        p50_ms=result["p50_ms"],
        p95_ms=result["p95_ms"],
        p99_ms=result["p99_ms"],
        errors=errors,
        timeouts=result["timeouts"],
        sold=check.sold,
        stock=stock,
        oversold=max(check.oversold, answered_over),
        consistent=check.consistent,
        ratio_to_ceiling=round(rate / ceiling, 3) if ceiling else 0.0,
        client_cpu_fraction=round(result["client_cpu_fraction"], 2),
        client_bound=result["client_cpu_fraction"] > 0.9,
        server_rss_mb_max=round(rss, 1),
        requests=sum(statuses.values()),
        statuses=statuses,
        drift=check.drift[:50],
        settled=check.settled,
        audit=check.report(),
        generator=result["generator"],
    )


async def _scenario(
    config: BenchConfig,
    settings: Settings,
    *,
    strategy: str,
    scenario: str,
    workers: int,
    tokens: list[str],
    processes: list[psutil.Process],
    progress: Progress,
    ceiling: float,
) -> Run:
    container = Container.build(msgspec.structs.replace(settings, stock_strategy=strategy))
    try:
        if scenario == "hot":
            options, stock = await _make_options(container, 1, 10_000_000), 10_000_000
        elif scenario == "spread":
            per_option = 1_000_000
            options = await _make_options(container, config.spread_options, per_option)
            stock = per_option * config.spread_options
        else:
            options, stock = (
                await _make_options(container, 1, config.sellout_stock),
                config.sellout_stock,
            )
        sellout = scenario == "sellout"
        buyer_tokens = await _make_buyers(container, config.sellout_buyers) if sellout else tokens
        spec = Spec(
            base_url=f"http://127.0.0.1:{config.port}",
            method="purchase",
            path="/api/orders",
            tokens=buyer_tokens,
            option_ids=options,
            concurrency=config.concurrency,
            duration=None if sellout else config.duration,
            total=config.sellout_buyers if sellout else None,
        )
        label = f"{strategy:8} {scenario:8} ×{workers}"
        sequential: dict[str, Any] = {}
        if not sellout:
            # First, on a server the saturated run has not yet left draining abandoned requests.
            sequential = _drive(
                _sequential(spec, config.sequential_s),
                progress,
                f"{label} sequential",
                config.sequential_s,
                config.generator,
            )
        with RssSampler(processes) as rss, CpuSampler(processes[1:], settings) as cpu:
            result = _drive(spec, progress, label, config.duration, config.generator)
        check = await audit(
            container,
            options,
            deadline_s=SETTLE_TIMEOUT,
            # A request the load generator gave up on may still run on the server a while.
            abandoned_after=spec.timeout + 5,
        )
        run = _summarise(
            result,
            strategy=strategy,
            scenario=scenario,
            workers=workers,
            stock=stock,
            check=check,
            ceiling=ceiling,
            rss=rss.peak_mb,
        )
        run.cpu_percent = cpu.percent
        if sequential:
            run.sequential_p50_ms = sequential["p50_ms"]
            run.sequential_per_s = _rate(sequential, "201")
        return run
    finally:
        await container.close()


def _sequential(spec: Spec, duration: float) -> Spec:
    """The same load through one connection: each request meets an otherwise idle server."""
    return Spec(**{**asdict(spec), "concurrency": 1, "duration": duration, "total": None})


def _rate(result: dict[str, Any], status: str) -> float:
    ok = result["statuses"].get(status, 0)
    return float(ok / result["elapsed_s"]) if result["elapsed_s"] else 0.0


def _reference(
    config: BenchConfig,
    *,
    path: str,
    tokens: list[str],
    progress: Progress,
    label: str,
    processes: Sequence[psutil.Process],
    settings: Settings | None = None,
) -> dict[str, Any]:
    """A GET sequential, then saturated (with each server process's CPU)."""
    spec = Spec(
        base_url=f"http://127.0.0.1:{config.port}",
        method="get",
        path=path,
        tokens=tokens,
        concurrency=config.concurrency,
        duration=config.duration,
    )
    # Sequential first: the latency of one request on an idle server (see _scenario).
    sequential = _drive(
        _sequential(spec, config.sequential_s),
        progress,
        f"{label} sequential",
        config.sequential_s,
        config.generator,
    )
    with CpuSampler(processes, settings) as cpu:
        result = _drive(spec, progress, label, config.duration, config.generator)
    if result["client_cpu_fraction"] > 0.9:
        console.print(f"[yellow]{label} was client-bound: the load generator saturated its core")
    return {
        "per_s": round(_rate(result, "200"), 1),
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "sequential_p50_ms": sequential["p50_ms"],
        "sequential_per_s": round(_rate(sequential, "200"), 1),
        "generator": result["generator"],
        "client_cpu_fraction": round(result["client_cpu_fraction"], 2),
        "cpu_percent": cpu.percent,
        "statuses": result["statuses"],
    }


def _bare_references(
    config: BenchConfig, settings: Settings, tokens: list[str], progress: Progress, workers: int
) -> dict[str, dict[str, Any]]:
    """``GET /ping`` and the PyJWT-verified GET on the bare app, same workers, same generator."""
    with bare_serving(jwt_secret_of(settings), workers=workers, port=config.port) as processes:
        return {
            name: _reference(
                config,
                path=path,
                tokens=tokens,
                progress=progress,
                label=f"bare {name:8} ×{workers}",
                processes=processes[1:],
            )
            for name, path in (("ping", "/ping"), ("jwt_get", "/jwt"))
        }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _cpu_ms(percent: dict[str, float], per_s: float) -> float | None:
    used = sum(v for k, v in percent.items() if k.startswith("worker "))
    return round(10 * used / per_s, 3) if per_s else None


def ratios(report: dict[str, Any], workers: int) -> dict[str, Any]:
    """The issue's targets, as ratios within this one run (``None`` where a run is missing)."""
    refs = report["references"].get(str(workers), {})
    by = {(r["strategy"], r["scenario"]): r for r in report["runs"] if r["workers"] == workers}
    whoami = refs.get("whoami", {})
    counter_hot = by.get(("counter", "hot"), {})
    db_hot = by.get(("db", "hot"), {})
    redlock_hot = by.get(("redlock", "hot"), {})
    rss = [r["server_rss_mb_max"] for r in report["runs"] if r["workers"] == workers]
    return {
        "workers": workers,
        # App-worker CPU time per answered request: unlike req/s, it does not move when other
        # tenants of a shared machine take the cores, so it says what each request costs.
        "worker_cpu_ms_per_request": {
            **{name: _cpu_ms(ref["cpu_percent"], ref["per_s"]) for name, ref in refs.items()},
            **{
                f"{s}/{c}": _cpu_ms(r["cpu_percent"], r["purchases_per_s"])
                for (s, c), r in by.items()
                if c != "sellout"
            },
        },
        "whoami_over_bare_jwt_get": _ratio(
            whoami.get("per_s"), refs.get("jwt_get", {}).get("per_s")
        ),
        "counter_hot_over_whoami": _ratio(counter_hot.get("purchases_per_s"), whoami.get("per_s")),
        "counter_over_db_hot": _ratio(
            counter_hot.get("purchases_per_s"), db_hot.get("purchases_per_s")
        ),
        "redlock_hot_per_s": redlock_hot.get("purchases_per_s"),
        "redlock_hot_over_before": _ratio(redlock_hot.get("purchases_per_s"), REDLOCK_HOT_BEFORE),
        "sequential_purchase_over_whoami": _ratio(
            counter_hot.get("sequential_p50_ms"), whoami.get("sequential_p50_ms")
        ),
        "worker_rss_mb_max": max(rss) if rss else None,
        "oversold": sum(r["oversold"] for r in report["runs"]),
        "audits_ok": not failed_runs(report),
        "targets": {
            "whoami_over_bare_jwt_get": ">= 0.8",
            "counter_hot_over_whoami": ">= 0.4",
            "counter_over_db_hot": ">= 3",
            "redlock_hot_over_before": f">= 2 (before: {REDLOCK_HOT_BEFORE:.0f}/s)",
            "sequential_purchase_over_whoami": "<= 2",
            "worker_rss_mb_max": "< 200",
            "oversold": "0",
        },
    }


def run(config: BenchConfig) -> dict[str, Any]:
    base = msgspec.structs.replace(load_settings(), data_dir=config.data_dir)
    settings, servers = resolve_services(base)
    try:
        database_url, _ = require_urls(settings)
        migrations.upgrade(database_url)
        runs: list[Run] = []
        references: dict[int, dict[str, dict[str, Any]]] = {}
        reference_tokens = asyncio.run(_make_buyers_sync(Container.build(settings), config.buyers))
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            for workers in config.workers:
                references[workers] = _bare_references(
                    config, settings, reference_tokens, progress, workers
                )
                for strategy in config.strategies:
                    asyncio.run(_use(settings, strategy))
                    with serving(
                        settings, strategy=strategy, workers=workers, port=config.port
                    ) as processes:
                        container = Container.build(settings)
                        tokens = asyncio.run(_make_buyers_sync(container, config.buyers))
                        if "whoami" not in references[workers]:
                            references[workers]["whoami"] = _reference(
                                config,
                                path="/api/auth/whoami",
                                tokens=reference_tokens,
                                progress=progress,
                                label=f"shop whoami   ×{workers}",
                                processes=processes[1:],
                                settings=settings,
                            )
                        ceiling = references[workers]["whoami"]["per_s"]
                        for scenario in config.scenarios:
                            runs.append(
                                asyncio.run(
                                    _scenario(
                                        config,
                                        settings,
                                        strategy=strategy,
                                        scenario=scenario,
                                        workers=workers,
                                        tokens=tokens,
                                        processes=processes,
                                        progress=progress,
                                        ceiling=ceiling,
                                    )
                                )
                            )
                        scraped = save_metrics(
                            config.port,
                            config.out.parent / f"metrics-{strategy}.prom",
                            token=settings.metrics_token,
                        )
                        console.print(f"/metrics of the {strategy} shop saved to {scraped}")
        generators = sorted(
            {ref["generator"] for refs in references.values() for ref in refs.values()}
            | {r.generator for r in runs}
        )
        last = config.workers[-1]
        report: dict[str, Any] = {
            "generator": ", ".join(generators),
            "ceiling_per_s": references[last].get("whoami", {}).get("per_s", 0.0),
            "ceiling_by_workers": {
                str(k): v.get("whoami", {}).get("per_s", 0.0) for k, v in references.items()
            },
            "references": {str(k): v for k, v in references.items()},
            "machine": {
                "cpus": os.cpu_count(),
                # Other tenants' load at the end of the run: figures from a busy box are noisy.
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "config": {
                "concurrency": config.concurrency,
                "duration_s": config.duration,
                "sequential_s": config.sequential_s,
                "sellout_stock": config.sellout_stock,
                "sellout_buyers": config.sellout_buyers,
                "spread_options": config.spread_options,
            },
            "runs": [asdict(r) for r in runs],
        }
        report["ratios"] = {str(w): ratios(report, w) for w in config.workers}
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_text(json.dumps(report, indent=2))
        _print_references(report)
        _print_table(report)
        _print_ratios(report)
        _print_failures(report)
        if config.chart:
            _chart(report, config.out.with_suffix(".png"))
        return report
    finally:
        servers.stop()


async def _use(settings: Settings, strategy: str) -> None:
    """Switch the deployment's stock strategy the way an operator does (``shop stock use``):
    the environment only picks the strategy of a fresh deployment."""
    container = Container.build(settings)
    try:
        await container.stock_operations.use(strategy)
    finally:
        await container.close()


async def _make_buyers_sync(container: Container, count: int) -> list[str]:
    try:
        return await _make_buyers(container, count)
    finally:
        await container.close()


def _print_table(report: dict[str, Any]) -> None:
    table = Table(
        title="purchases over HTTP — ceiling (trivial authenticated GET): "
        f"{report['ceiling_per_s']:.0f}/s; load generator: {report['generator']}"
    )
    for column in (
        "strategy",
        "scenario",
        "workers",
        "purchases/s",
        "× ceiling",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "seq p50 ms",
        "errors",
        "timeouts",
        "sold/stock",
        "oversold",
        "consistent",
        "RSS MB",
        "client CPU",
    ):
        table.add_column(column, justify="right")
    for r in report["runs"]:
        table.add_row(
            r["strategy"],
            r["scenario"],
            str(r["workers"]),
            f"{r['purchases_per_s']:.0f}",
            f"{r['ratio_to_ceiling']:.2f}",
            str(r["p50_ms"]),
            str(r["p95_ms"]),
            str(r["p99_ms"]),
            str(r["sequential_p50_ms"] or "-"),
            str(r["errors"]),
            str(r["timeouts"]),
            f"{r['sold']}/{r['stock']}",
            ("[red]" if r["oversold"] else "[green]") + str(r["oversold"]),
            ("[green]yes" if r["consistent"] else "[red]NO"),
            str(r["server_rss_mb_max"]),
            f"{r['client_cpu_fraction']:.0%}" + (" (client-bound)" if r["client_bound"] else ""),
        )
    console.print(table)


def _print_references(report: dict[str, Any]) -> None:
    table = Table(title=f"references — load generator: {report['generator']}")
    for column in (
        "what", "workers", "req/s", "p50 ms", "p99 ms", "sequential p50 ms", "client CPU",
        "CPU % (saturated)",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    names = {"ping": "bare GET /ping", "jwt_get": "bare JWT GET", "whoami": "shop whoami"}
    for workers, refs in report["references"].items():
        for key, ref in refs.items():
            table.add_row(
                names.get(key, key),
                workers,
                f"{ref['per_s']:.0f}",
                str(ref["p50_ms"]),
                str(ref["p99_ms"]),
                str(ref["sequential_p50_ms"]),
                f"{ref['client_cpu_fraction']:.0%}",
                _cpu(ref["cpu_percent"]),
            )
    console.print(table)


def _cpu(percent: dict[str, float]) -> str:
    return " · ".join(f"{name} {value:.0f}" for name, value in percent.items())


def _print_ratios(report: dict[str, Any]) -> None:
    for workers, got in report["ratios"].items():
        table = Table(title=f"issue 16 targets, {workers} worker(s), within this run")
        for column in ("ratio", "value", "target"):
            table.add_column(column, justify="right")
        for key, target in got["targets"].items():
            table.add_row(key, str(got.get(key)), target)
        table.add_row("redlock_hot_per_s", str(got["redlock_hot_per_s"]), "")
        for name, ms in got["worker_cpu_ms_per_request"].items():
            table.add_row(f"worker CPU ms / request: {name}", str(ms), "")
        console.print(table)
    for r in report["runs"]:
        if r["cpu_percent"]:
            console.print(
                f"CPU % while saturated, {r['strategy']} {r['scenario']} ×{r['workers']}: "
                + _cpu(r["cpu_percent"]),
                highlight=False,
            )


def _print_failures(report: dict[str, Any]) -> None:
    """Everything the results file keeps about each failed audit, readable on the console."""
    for r in failed_runs(report):
        kept = r["audit"]
        console.rule(
            f"[red]AUDIT {kept.get('verdict', OVERSOLD).upper()}: {r['strategy']} "
            f"{r['scenario']} ×{r['workers']}"
        )
        console.print(
            f"{kept.get('reason', '')}\n"
            f"oversold {r['oversold']} · sold {r['sold']}/{r['stock']} · settled "
            f"{kept.get('settled')} after {kept.get('waited_s')} s ({kept.get('polls')} polls) · "
            f"HTTP {r['statuses']} · timeouts {r['timeouts']}\n"
            f"option.stock behind the counters at the start: "
            f"{kept.get('db_behind_counter_at_start')} unit(s) · SAQ jobs queued: "
            f"{kept.get('worker_backlog_at_start')}\n"
            f"orders by status: {kept.get('order_statuses')}\n"
            f"open reservations: {kept.get('reservations')}",
            highlight=False,
        )
        ledger = kept.get("ledger", [])
        shown = [
            row for row in ledger if row["db_drift"] or row["counter_drift"] or row["oversold"]
        ]
        table = Table(
            title=f"ledger: {len(shown) or len(ledger)} of {len(ledger)} option(s) "
            + ("drifting" if shown else "(none drifting)")
        )
        columns = (
            "option_id",
            "stock_total",
            "sold",
            "held",
            "db_stock",
            "counter",
            "expected",
            "db_drift",
            "counter_drift",
            "oversold",
        )
        for column in columns:
            table.add_column(column, justify="right")
        for row in (shown or ledger)[:20]:
            table.add_row(*(str(row[column]) for column in columns))
        console.print(table)


def _chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    labels = [
        f"{r['strategy']}\n{r['scenario']}"
        + (f"\n×{r['workers']}" if len({x["workers"] for x in runs}) > 1 else "")
        for r in runs
    ]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, len(runs) * 0.9), 8), sharex=True)
    top.bar(labels, [r["purchases_per_s"] for r in runs], color="tab:blue")
    top.axhline(
        report["ceiling_per_s"], color="tab:red", linestyle="--", label="trivial GET ceiling"
    )
    top.set_ylabel("purchases / s")
    top.legend()
    bottom.bar(labels, [r["p99_ms"] for r in runs], color="tab:orange", label="p99")
    bottom.bar(labels, [r["p50_ms"] for r in runs], color="tab:green", label="p50")
    bottom.set_ylabel("latency (ms)")
    bottom.legend()
    fig.suptitle("shop: stock strategies under concurrent HTTP purchases")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def quick_config(out: Path | None = None) -> BenchConfig:
    """Every strategy and scenario, small enough for about two minutes on a 2-core machine."""
    return BenchConfig(
        duration=5.0,
        sellout_stock=100,
        sellout_buyers=400,
        spread_options=200,
        buyers=100,
        out=out or BenchConfig.out,
    )


def main(argv: Sequence[str] | None = None) -> None:
    from shop.entrypoints.cli.bench import bench

    bench.main(args=list(argv) if argv is not None else None, standalone_mode=True)


if __name__ == "__main__":
    main()

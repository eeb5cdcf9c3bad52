"""The stock-strategy benchmark: real HTTP purchases, every strategy side by side in one run.

``uv run shop bench`` (or ``uv run python -m benchmarks.stock``) starts the shop (granian with
N workers + the SAQ worker) once per strategy on the embedded servers under ``--data-dir``
(or the servers named by SHOP_DATABASE_URL / SHOP_REDIS_URL), creates options and buyer
accounts, and drives ``POST /api/orders`` from a separate load-generator process:

- ``hot``     everyone races for one option (stock large enough not to run out);
- ``spread``  purchases spread over many options;
- ``sellout`` more buyers than units: exactly ``stock`` purchases may succeed.

The same run measures a trivial authenticated GET as the ceiling of what the server can
answer, and reports each strategy's ratio to it. After each scenario the audit
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

import msgspec
import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text

from benchmarks.audit import OK, OVERSOLD, Audit, audit
from benchmarks.loadgen import Spec
from shop.adapters.db import migrations
from shop.bootstrap import Container, require_urls, resolve_services
from shop.config import Settings, load_settings
from shop.domain.identity.model import Principal, Role
from shop.entrypoints.cli.server import api_command, metrics_environment

SCENARIOS = ("hot", "spread", "sellout")
STRATEGIES = ("counter", "redlock", "db")
# Generous: each reading scans every open reservation, which grows with a reused data dir.
SETTLE_TIMEOUT = 60.0
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
        # The throttle stays on (its Redis round trip is part of every request's real cost),
        # with a per-user quota no benchmark buyer reaches.
        "SHOP_RATE_LIMIT_USER": "10000000/minute",
        **metrics_environment(settings.data_path),
    }
    api = subprocess.Popen(api_command("127.0.0.1", port, workers), env=env)
    worker = subprocess.Popen([sys.executable, "-m", "shop.entrypoints.workers"], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if api.poll() is not None:
                raise RuntimeError("the API server exited during start-up")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the API server did not come up") from None
                time.sleep(0.2)
        processes = [psutil.Process(api.pid), *psutil.Process(api.pid).children(recursive=True)]
        yield processes
    finally:
        for child in (api, worker):
            child.terminate()
        for child in (api, worker):
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()


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


async def _make_buyers(container: Container, count: int) -> list[str]:
    """Real user rows (orders reference them) and access tokens minted with the server's key."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with container.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO user_account (id, email, password_hash, name, role) "
                "SELECT u, 'bench-' || u::text || '@example.test', 'x', 'Bench buyer', 'customer' "
                "FROM unnest(CAST(:ids AS uuid[])) AS u"
            ),
            {"ids": ids},
        )
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


def _drive(spec: Spec, progress: Progress, label: str, expected_s: float) -> dict[str, Any]:
    """Run the load generator in its own process, with a progress bar while it works."""
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
    latencies: list[float] = result["latencies_ms"]
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
        p50_ms=_percentile(latencies, 50),
        p95_ms=_percentile(latencies, 95),
        p99_ms=_percentile(latencies, 99),
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
        with RssSampler(processes) as rss:
            result = _drive(
                spec, progress, f"{strategy:8} {scenario:8} ×{workers}", config.duration
            )
        check = await audit(
            container,
            options,
            deadline_s=SETTLE_TIMEOUT,
            # A request the load generator gave up on may still run on the server a while.
            abandoned_after=spec.timeout + 5,
        )
        return _summarise(
            result,
            strategy=strategy,
            scenario=scenario,
            workers=workers,
            stock=stock,
            check=check,
            ceiling=ceiling,
            rss=rss.peak_mb,
        )
    finally:
        await container.close()


def _ceiling(config: BenchConfig, tokens: list[str], progress: Progress, workers: int) -> float:
    spec = Spec(
        base_url=f"http://127.0.0.1:{config.port}",
        method="get",
        path="/api/auth/whoami",
        tokens=tokens,
        concurrency=config.concurrency,
        duration=config.duration,
    )
    result = _drive(spec, progress, f"ceiling  GET      ×{workers}", config.duration)
    ok = result["statuses"].get("200", 0)
    if result["client_cpu_fraction"] > 0.9:
        console.print("[yellow]the ceiling was client-bound: the load generator saturated its core")
    return ok / result["elapsed_s"] if result["elapsed_s"] else 0.0


def run(config: BenchConfig) -> dict[str, Any]:
    base = msgspec.structs.replace(load_settings(), data_dir=config.data_dir)
    settings, servers = resolve_services(base)
    try:
        database_url, _ = require_urls(settings)
        migrations.upgrade(database_url)
        runs: list[Run] = []
        ceilings: dict[int, float] = {}
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            for workers in config.workers:
                for strategy in config.strategies:
                    asyncio.run(_use(settings, strategy))
                    with serving(
                        settings, strategy=strategy, workers=workers, port=config.port
                    ) as processes:
                        container = Container.build(settings)
                        tokens = asyncio.run(_make_buyers_sync(container, config.buyers))
                        if workers not in ceilings:
                            ceilings[workers] = _ceiling(config, tokens, progress, workers)
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
                                        ceiling=ceilings[workers],
                                    )
                                )
                            )
        report = {
            "ceiling_per_s": round(ceilings[config.workers[-1]], 1),
            "ceiling_by_workers": {str(k): round(v, 1) for k, v in ceilings.items()},
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "config": {
                "concurrency": config.concurrency,
                "duration_s": config.duration,
                "sellout_stock": config.sellout_stock,
                "sellout_buyers": config.sellout_buyers,
                "spread_options": config.spread_options,
            },
            "runs": [asdict(r) for r in runs],
        }
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_text(json.dumps(report, indent=2))
        _print_table(report)
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
        f"{report['ceiling_per_s']:.0f}/s"
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
            str(r["errors"]),
            str(r["timeouts"]),
            f"{r['sold']}/{r['stock']}",
            ("[red]" if r["oversold"] else "[green]") + str(r["oversold"]),
            ("[green]yes" if r["consistent"] else "[red]NO"),
            str(r["server_rss_mb_max"]),
            f"{r['client_cpu_fraction']:.0%}" + (" (client-bound)" if r["client_bound"] else ""),
        )
    console.print(table)


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

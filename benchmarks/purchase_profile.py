"""Where a purchase's time goes, step by step, per stock strategy (in process, not a test).

    uv run python -m benchmarks.purchase_profile [--purchases 2000] [--strategies counter,db]
        [--concurrency 1] [--profile pyinstrument] [--out benchmarks/results/purchase.json]

``shop bench`` measures purchases over HTTP on 2 cores shared with everything else, so a
change of a few hundred microseconds drowns in its noise. This driver runs the use case
itself (``Container.order_cases.place``, the same wiring the HTTP handler calls) against the
embedded PostgreSQL and Redis (private ones in a temporary directory, or ``--data-dir``), one
option on sale with stock that never runs out (the bench's ``hot`` scenario), each purchase
by its own buyer with its own Idempotency-Key. It reports, per strategy:

- the wall time of the whole use case (p50, mean) and of each port call on its path
  (``orders.quote``, ``stock.reserve``, ``orders.add``, ``stock.confirm``): a step that
  disappears or gets cheaper shows here;
- this process's CPU time per purchase (``time.process_time``: the app side only, the
  servers are other processes), which is what bounds throughput on the saturated machine;
- the statements and Redis commands are not counted: read the steps.

Each strategy is measured in rounds that alternate with the other strategies (``--rounds``),
and the per-round medians are reported with their spread, so a neighbour's burst of load
shows up as spread instead of skewing one strategy. ``--profile pyinstrument`` also writes
one pyinstrument text profile per strategy beside ``--out``; for py-spy, run this module
under ``py-spy record -o purchase.svg -- python -m benchmarks.purchase_profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
from sqlalchemy import text

from benchmarks.stock import insert_buyers
from shop.adapters.db import migrations
from shop.bootstrap import STOCK_STRATEGIES, Container, OrderCases, require_urls, resolve_services
from shop.config import Settings, load_settings
from shop.domain.identity.model import Principal, Role
from shop.domain.orders.model import PaymentMethod, PlaceOrder
from shop.domain.stock.model import Line
from shop.entrypoints.http.app import create_app

STEPS = ("quote", "reserve", "add", "confirm")
DEFAULT_OUT = Path("benchmarks/results/purchase.json")


class Timed:
    """A port whose coroutine methods record their wall time under the method's name."""

    def __init__(self, port: Any, samples: dict[str, list[float]]) -> None:
        self._port = port
        self._samples = samples

    def __getattr__(self, name: str) -> Any:
        member = getattr(self._port, name)
        if name not in STEPS:
            return member

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await member(*args, **kwargs)
            finally:
                self._samples[name].append(time.perf_counter() - started)

        return timed


async def _buyers(container: Container, count: int) -> list[uuid.UUID]:
    return await insert_buyers(container, count, label="profile")


async def _hot_option(container: Container) -> int:
    async with container.engine.begin() as conn:
        product_id = (
            await conn.execute(
                text("INSERT INTO product (name, price) VALUES ('Profile item', 1000) RETURNING id")
            )
        ).scalar_one()
        option_id = (
            await conn.execute(
                text(
                    "INSERT INTO option (product_id, name, price, stock_total, stock) "
                    "VALUES (:p, 'one size', 1000, 0, 0) RETURNING id"
                ),
                {"p": product_id},
            )
        ).scalar_one()
    await container.stock.put_on_sale(int(option_id), 10_000_000)
    return int(option_id)


def _command(buyer: uuid.UUID, option_id: int) -> PlaceOrder:
    return PlaceOrder(
        user_id=buyer,
        idempotency_key=uuid.uuid4().hex,
        lines=(Line(option_id, 1),),
        payment_method=PaymentMethod.CARD,
        shipping_address="1 Profile Street",
    )


Purchase = Callable[[uuid.UUID, int], Awaitable[None]]


def _through_use_case(cases: OrderCases) -> Purchase:
    async def purchase(buyer: uuid.UUID, option_id: int) -> None:
        await cases.place(_command(buyer, option_id))

    return purchase


def _through_http(
    container: Container, client: httpx.AsyncClient, buyers: Sequence[uuid.UUID]
) -> Purchase:
    """``POST /api/orders`` through the whole ASGI app (auth, throttle, logs, rendering).
    The buyers' tokens are minted before the clock starts: that is the client's work."""
    tokens = {buyer: _bearer(container, buyer) for buyer in buyers}

    async def purchase(buyer: uuid.UUID, option_id: int) -> None:
        response = await client.post(
            "/api/orders",
            json={
                "lines": [{"option_id": option_id, "quantity": 1}],
                "payment_method": "card",
                "shipping_address": "1 Profile Street",
            },
            headers={"Idempotency-Key": uuid.uuid4().hex, **tokens[buyer]},
        )
        if response.status_code != 201:
            raise RuntimeError(f"purchase answered {response.status_code}: {response.text}")

    return purchase


def _bearer(container: Container, user_id: uuid.UUID) -> dict[str, str]:
    token, _ = container.access_tokens.issue(Principal(user_id=user_id, role=Role.CUSTOMER))
    return {"Authorization": f"Bearer {token}"}


async def _whoami(
    container: Container, client: httpx.AsyncClient, count: int
) -> tuple[list[float], float]:
    """The HTTP reference: a trivial authenticated GET through the same app and client."""
    headers = _bearer(container, uuid.uuid4())
    latencies: list[float] = []
    cpu = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        response = await client.get("/api/auth/whoami", headers=headers)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"whoami answered {response.status_code}")
    return latencies, time.process_time() - cpu


async def _round(
    purchase: Purchase, buyers: Sequence[uuid.UUID], option_id: int, concurrency: int
) -> tuple[list[float], float, float]:
    """Place one order per buyer, ``concurrency`` at a time: (latencies, cpu s, wall s)."""
    latencies: list[float] = []
    pending = iter(buyers)

    async def worker() -> None:
        for buyer in pending:
            started = time.perf_counter()
            await purchase(buyer, option_id)
            latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.process_time() - cpu, time.perf_counter() - wall


def _ms(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 3),
    }


@dataclasses.dataclass
class Measured:
    latencies: list[float] = dataclasses.field(default_factory=list)
    steps: dict[str, list[float]] = dataclasses.field(default_factory=lambda: defaultdict(list))
    cpu_us_per_round: list[float] = dataclasses.field(default_factory=list)
    per_s_per_round: list[float] = dataclasses.field(default_factory=list)


async def _measure(
    settings: Settings, strategies: Sequence[str], args: argparse.Namespace
) -> dict[str, Any]:
    container = Container.build(settings)
    measured = {name: Measured() for name in strategies}
    profilers: dict[str, Any] = {}
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)),  # type: ignore[arg-type]
        base_url="http://profile",
    )
    reference: dict[str, Any] = {}
    try:
        for name in strategies:
            if args.profile == "pyinstrument":
                from pyinstrument import Profiler

                profilers[name] = Profiler(async_mode="enabled")
        for round_no in range(args.rounds + 1):  # round 0 warms every strategy up
            for name in strategies:
                await container.stock_operations.use(name)
                option_id = await _hot_option(container)
                buyers = await _buyers(container, args.purchases // args.rounds)
                result = measured[name]
                steps: dict[str, list[float]] = defaultdict(list)
                cases = dataclasses.replace(
                    container.order_cases,
                    orders=Timed(container.orders, steps),
                    stock=Timed(container.stock, steps),
                )
                purchase = (
                    _through_http(container, client, buyers)
                    if args.http
                    else _through_use_case(cases)
                )
                profiler = profilers.get(name) if round_no else None
                if profiler is not None:
                    profiler.start()
                latencies, cpu, wall = await _round(purchase, buyers, option_id, args.concurrency)
                if profiler is not None:
                    profiler.stop()
                if round_no == 0:
                    continue
                result.latencies += latencies
                for step, values in steps.items():
                    result.steps[step] += values
                result.cpu_us_per_round.append(cpu / len(buyers) * 1e6)
                result.per_s_per_round.append(len(buyers) / wall)
        if args.http:
            latencies, cpu = await _whoami(container, client, args.purchases)
            reference = {
                "whoami": _ms(latencies),
                "cpu_us_per_request": round(cpu / args.purchases * 1e6),
            }
    finally:
        await client.aclose()
        await container.close()
    report: dict[str, Any] = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name, result in measured.items():
        report[name] = {
            "purchases": len(result.latencies),
            "use_case": _ms(result.latencies),
            "steps": {step: _ms(result.steps[step]) for step in STEPS if result.steps[step]},
            "cpu_us_per_purchase": round(statistics.median(result.cpu_us_per_round)),
            "cpu_us_spread": [
                round(min(result.cpu_us_per_round)),
                round(max(result.cpu_us_per_round)),
            ],
            "per_s": round(statistics.median(result.per_s_per_round)),
        }
        if name in profilers:
            path = args.out.with_name(f"{args.out.stem}-{name}.txt")
            path.write_text(profilers[name].output_text(unicode=True, show_all=False))
            report[name]["profile"] = str(path)
    if reference:
        report["whoami (reference)"] = reference
    return report


def _print(report: dict[str, Any], concurrency: int) -> None:
    print(f"in-process purchases, one hot option, concurrency {concurrency}")
    print(
        f"{'strategy':<10}{'p50 ms':>8}{'mean':>8}{'cpu µs':>9}{'spread':>13}{'/s':>7}"
        "  steps p50 ms (not with --http)"
    )
    for name, row in report.items():
        if "whoami" in row:
            print(
                f"{name}: p50 {row['whoami']['p50_ms']:.2f} ms, "
                f"cpu {row['cpu_us_per_request']} µs/request"
            )
            continue
        steps = "  ".join(f"{k} {v['p50_ms']:.2f}" for k, v in row["steps"].items())
        lo, hi = row["cpu_us_spread"]
        print(
            f"{name:<10}{row['use_case']['p50_ms']:>8.2f}{row['use_case']['mean_ms']:>8.2f}"
            f"{row['cpu_us_per_purchase']:>9}{f'{lo}–{hi}':>13}{row['per_s']:>7}  {steps}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--purchases", type=int, default=2000, help="per strategy, all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--strategies", default=",".join(STOCK_STRATEGIES), help="comma-separated")
    parser.add_argument(
        "--http",
        action="store_true",
        help="purchase through the ASGI app (POST /api/orders) and time whoami beside it",
    )
    parser.add_argument("--profile", choices=("none", "pyinstrument"), default="none")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    # httpx logs every request at INFO: the client's own logging would count as the shop's CPU.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = [s for s in strategies if s not in STOCK_STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown} (known: {', '.join(STOCK_STRATEGIES)})")
    with tempfile.TemporaryDirectory(prefix="shop-profile-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        # Like shop bench: the throttle counts every request (its cost is measured) but never
        # refuses one of this driver's buyers.
        base = msgspec.structs.replace(
            load_settings(),
            data_dir=str(data_dir),
            log_level="WARNING",
            rate_limit_user="10000000/minute",
        )
        settings, servers = resolve_services(base)
        try:
            migrations.upgrade(require_urls(settings)[0])
            report = asyncio.run(_measure(settings, strategies, args))
        finally:
            servers.stop()
    args.out.write_text(
        json.dumps({"concurrency": args.concurrency, "strategies": report}, indent=2)
    )
    _print(report, args.concurrency)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The ``drop`` scenario of ``shop bench``: a queued drop under thousands of polling clients.

The shop runs as in the stock benchmark (granian with N workers plus the SAQ worker, see
``benchmarks.stock.serving``). A drop of ``stock`` units opens two seconds after it is
made, with its waiting room at ``admit_per_second``; ``clients`` buyers join in the
pre-queue, then poll the queue as fast as their connections allow; each admitted buyer buys
one unit with its token. In the same run a trivial authenticated GET (``/api/auth/whoami``)
is measured at the same concurrency as the ceiling, and polls/s is reported as a ratio to it.
Afterwards the stores are audited as in the other scenarios (``benchmarks.audit``) and the
number of units sold must be exactly the stock.

Run with ``shop bench --scenarios drop`` or ``python -m benchmarks.drop``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from benchmarks.audit import OK, audit
from benchmarks.scrape import save_metrics
from benchmarks.stock import _make_buyers, _make_options, _use, serving
from shop.adapters.db import migrations
from shop.bootstrap import Container, require_urls, resolve_services
from shop.config import load_settings
from shop.domain.drops.model import DropRules, QueueSettings
from shop.domain.drops.services import create_drop, get_drop

console = Console()


@dataclass
class DropBenchConfig:
    clients: int = 2000
    stock: int = 200
    admit_per_second: int = 100
    concurrency: int = 64
    duration: float = 10.0  # of the polling phase and of the ceiling
    workers: int = 2
    strategy: str = "counter"
    port: int = 8799
    data_dir: str = ".shop-bench"
    out: Path = Path("benchmarks/results/drop.json")


@dataclass
class DropRun:
    workers: int
    strategy: str
    clients: int
    stock: int
    polls_per_s: float
    ceiling_per_s: float
    ratio_to_ceiling: float
    poll_p50_ms: float
    poll_p99_ms: float
    admitted: int
    sold: int
    exactly_the_stock: bool
    audit_verdict: str
    statuses: dict[str, int] = field(default_factory=dict)


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))], 2)


async def _ceiling(base: str, tokens: list[str], concurrency: int, duration: float) -> float:
    done = 0
    stop = time.monotonic() + duration

    async def slot(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal done
        headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
        while time.monotonic() < stop:
            async with session.get(f"{base}/api/auth/whoami", headers=headers) as answer:
                await answer.read()
                done += answer.status == 200

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(slot(s, n) for n in range(concurrency)))
    return done / (time.monotonic() - started)


async def _crowd(
    base: str,
    drop_id: int,
    tokens: list[str],
    option_id: int,
    config: DropBenchConfig,
    starts_at: datetime,
) -> dict[str, Any]:
    """Every client joins, then ``concurrency`` connections poll on behalf of the waiting
    clients in turn; an admitted client buys at once."""
    queue = f"{base}/api/drops/{drop_id}/queue"
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    waiting = list(range(len(tokens)))
    admitted: set[int] = set()
    sold = 0

    def headers(n: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[n]}"}

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.concurrency)
    ) as session:

        async def join(n: int) -> None:
            async with session.post(queue, headers=headers(n)) as answer:
                await answer.read()

        for first in range(0, len(tokens), config.concurrency):
            await asyncio.gather(
                *(join(n) for n in range(first, first + config.concurrency) if n < len(tokens))
            )
        await asyncio.sleep(max(0.0, (starts_at - datetime.now(UTC)).total_seconds()))
        stop = time.monotonic() + config.duration
        cap = stop + SELL_OUT_CAP
        polls_started = time.monotonic()
        cursor = 0

        async def slot() -> None:
            nonlocal cursor, sold
            # At least ``duration`` of polling, and on until the drop sold out (capped).
            while (
                waiting
                and time.monotonic() < cap
                and (time.monotonic() < stop or sold < config.stock)
            ):
                n = waiting[cursor % len(waiting)]
                cursor += 1
                sent = time.monotonic()
                async with session.get(queue, headers=headers(n)) as answer:
                    ticket = json.loads(await answer.read())
                latencies.append((time.monotonic() - sent) * 1000)
                status = ticket.get("status", str(answer.status))
                statuses[status] += 1
                if status == "admitted" and n not in admitted:
                    admitted.add(n)
                    if n in waiting:
                        waiting.remove(n)
                    body = {
                        "lines": [{"option_id": option_id, "quantity": 1}],
                        "payment_method": "card",
                        "shipping_address": "1 Benchmark Way",
                    }
                    async with session.post(
                        f"{base}/api/orders",
                        json=body,
                        headers={
                            **headers(n),
                            "Admission-Token": ticket["admission_token"],
                            "Idempotency-Key": uuid.uuid4().hex,
                        },
                    ) as bought:
                        await bought.read()
                        statuses[f"purchase {bought.status}"] += 1
                        sold += bought.status == 201

        await asyncio.gather(*(slot() for _ in range(config.concurrency)))
        elapsed = time.monotonic() - polls_started
    polls = sum(n for status, n in statuses.items() if not status.startswith("purchase"))
    return {
        "polls_per_s": polls / elapsed,
        "latencies": latencies,
        "statuses": dict(statuses),
        "admitted": len(admitted),
        "sold": sold,
    }


START_DELAY = 2.0
SELL_OUT_CAP = 60.0  # seconds of polling after ``duration`` to wait for the sell-out


async def _bench(config: DropBenchConfig, settings: Any) -> DropRun:
    container = Container.build(settings)
    try:
        tokens = await _make_buyers(container, config.clients)
        (option_id,) = await _make_options(container, 1, config.stock)
        drop = await create_drop(
            DropRules(
                name="bench drop",
                option_ids=(option_id,),
                starts_at=datetime.now(UTC) + timedelta(seconds=START_DELAY + 60),
                queue=QueueSettings(
                    enabled=True,
                    admit_per_second=config.admit_per_second,
                    pre_queue=timedelta(minutes=10),
                ),
            ),
            drops=container.drops,
            room=container.room,
            stock=container.stock,
            clock=container.clock,
        )
        base = f"http://127.0.0.1:{config.port}"
        ceiling = await _ceiling(base, tokens, config.concurrency, config.duration)
        # Announced a minute ahead (a drop must start in the future); the start is moved to
        # just after the joins, as time would do.
        starts_at = await _start_soon(container, drop.id, len(tokens) / 500)
        crowd = await _crowd(base, drop.id, tokens, option_id, config, starts_at)
        check = await audit(container, [option_id], deadline_s=60, abandoned_after=15)
        return DropRun(
            workers=config.workers,
            strategy=config.strategy,
            clients=config.clients,
            stock=config.stock,
            polls_per_s=round(crowd["polls_per_s"], 1),
            ceiling_per_s=round(ceiling, 1),
            ratio_to_ceiling=round(crowd["polls_per_s"] / ceiling, 3) if ceiling else 0.0,
            poll_p50_ms=_pct(crowd["latencies"], 50),
            poll_p99_ms=_pct(crowd["latencies"], 99),
            admitted=crowd["admitted"],
            sold=check.sold,
            exactly_the_stock=check.sold == config.stock and check.oversold == 0,
            audit_verdict=check.verdict,
            statuses=crowd["statuses"],
        )
    finally:
        await container.close()


async def _start_soon(container: Container, drop_id: int, joining_s: float) -> datetime:
    """Move the start to just after the joins (``joining_s``, estimated), as time would."""
    starts_at = datetime.now(UTC) + timedelta(seconds=START_DELAY + joining_s)
    async with container.engine.begin() as conn:
        await conn.execute(
            text("UPDATE sale_drop SET starts_at = :at WHERE id = :id"),
            {"at": starts_at, "id": drop_id},
        )
    await container.room.publish(await get_drop(drop_id, drops=container.drops))
    return starts_at


def run_drop(config: DropBenchConfig) -> DropRun:
    base = msgspec.structs.replace(load_settings(), data_dir=config.data_dir)
    settings, servers = resolve_services(base)
    try:
        migrations.upgrade(require_urls(settings)[0])
        asyncio.run(_use(settings, config.strategy))
        with serving(settings, strategy=config.strategy, workers=config.workers, port=config.port):
            result = asyncio.run(_bench(config, settings))
            scraped = save_metrics(
                config.port,
                config.out.parent / f"metrics-drop-{config.strategy}.prom",
                token=settings.metrics_token,
            )
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_text(json.dumps(asdict(result), indent=2))
        _print(result)
        console.print(f"/metrics of the drop's shop saved to {scraped}")
        return result
    finally:
        servers.stop()


def failed(result: DropRun) -> bool:
    return not result.exactly_the_stock or result.audit_verdict != OK


def _print(result: DropRun) -> None:
    table = Table(title="drop: polling the waiting room while admitted buyers purchase")
    for column in (
        "strategy",
        "workers",
        "clients",
        "polls/s",
        "ceiling/s",
        "× ceiling",
        "p50 ms",
        "p99 ms",
        "admitted",
        "sold",
        "exactly the stock",
        "audit",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        result.strategy,
        str(result.workers),
        str(result.clients),
        f"{result.polls_per_s:.0f}",
        f"{result.ceiling_per_s:.0f}",
        f"{result.ratio_to_ceiling:.2f}",
        f"{result.poll_p50_ms:.1f}",
        f"{result.poll_p99_ms:.1f}",
        str(result.admitted),
        f"{result.sold}/{result.stock}",
        "yes" if result.exactly_the_stock else "[red]NO[/red]",
        result.audit_verdict,
    )
    console.print(table)


def main() -> None:
    result = run_drop(DropBenchConfig())
    raise SystemExit(1 if failed(result) else 0)


if __name__ == "__main__":
    main()

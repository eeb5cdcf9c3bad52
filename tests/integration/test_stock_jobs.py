"""The stock jobs of the SAQ worker: the counter sync and the reservation sweep."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import pytest
from saq.types import Context

from shop.adapters.db.stock_ledger import ledger
from shop.bootstrap import Container
from shop.config import Settings
from shop.domain.stock.model import Line
from shop.entrypoints.workers import (
    build_worker,
    cron_jobs,
    every,
    sweep_reservations,
    sync_stock,
)
from tests.factories import make_option
from tests.jobs import job_context


@pytest.fixture
async def quick(clean: Container, settings: Settings) -> AsyncIterator[Container]:
    """A process whose reservations time out in a blink and whose sync runs every second."""
    container = Container.build(
        msgspec.structs.replace(settings, reservation_timeout=0.2, stock_sync_interval=1.0)
    )
    await container.stock_operations.use("counter")
    yield container
    await container.close()


@pytest.fixture
async def ctx(quick: Container) -> AsyncIterator[Context]:
    async with job_context(quick) as context:
        yield context


def test_cron_intervals_follow_the_settings(settings: Settings) -> None:
    tuned = msgspec.structs.replace(settings, stock_sync_interval=5, stock_sweep_interval=120)
    schedule = {job.function.__name__: job.cron for job in cron_jobs(tuned)}
    assert schedule["sync_stock"] == "* * * * * */5"
    assert schedule["sweep_reservations"] == "*/2 * * * *"
    assert every(0.2) == "* * * * * */1"


async def test_sync_writes_the_counters_to_the_database(quick: Container, ctx: Context) -> None:
    option_id = await make_option(quick, stock=10)
    await quick.stock.reserve([Line(option_id, 4)], key="k")
    assert (await ledger(quick.engine, [option_id]))[option_id].stock == 10

    assert await sync_stock(ctx) == 1

    assert (await ledger(quick.engine, [option_id]))[option_id].stock == 6


async def test_sweep_releases_a_reservation_whose_order_never_came(
    quick: Container, ctx: Context
) -> None:
    option_id = await make_option(quick, stock=10)
    await quick.stock.reserve([Line(option_id, 4)], key="abandoned")
    await asyncio.sleep(0.3)

    summary = await sweep_reservations(ctx)

    assert summary == {"confirmed": 0, "released": 1, "retired": 0}
    assert (await quick.stock.available([option_id]))[option_id] == 10


async def test_a_running_worker_syncs_on_its_own(quick: Container) -> None:
    option_id = await make_option(quick, stock=10)
    await quick.stock.reserve([Line(option_id, 3)], key="k")
    worker = build_worker(quick.settings, container=quick)
    await worker.queue.connect()
    running = asyncio.create_task(worker.start())
    try:
        for _ in range(100):  # the cron fires every second; allow ten
            if (await ledger(quick.engine, [option_id]))[option_id].stock == 7:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the worker never synced the counter to the database")
    finally:
        await worker.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await worker.queue.disconnect()

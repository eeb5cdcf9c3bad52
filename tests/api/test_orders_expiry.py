"""Payment deadlines with a real SAQ worker: its expiry sweep, and the per-order job an earlier
version left behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import msgspec
import pytest
from saq.job import Status

from shop.bootstrap import EXPIRE_ORDER_JOB, Container
from shop.entrypoints.http.app import create_app
from shop.entrypoints.workers import build_worker, cron_jobs, every, job_functions
from tests.conftest import http_client
from tests.factories import make_option, make_user
from tests.orders_client import order_body, place, stock_and_ledger, with_settings
from tests.payments_client import event, pay, send, start_payment


@asynccontextmanager
async def running_worker(container: Container, *, jobs: bool, crons: bool) -> AsyncIterator[None]:
    """The real worker in this event loop (its jobs, its cron sweeps, or both), stopped after."""
    worker = build_worker(
        container.settings,
        container=container,
        functions=job_functions() if jobs else [],
        crons=cron_jobs(container.settings) if crons else [],
    )
    task = asyncio.create_task(worker.start())
    try:
        yield
    finally:
        await worker.stop()
        await task
        await worker.queue.disconnect()


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {within}s")
        await asyncio.sleep(0.1)


async def test_unpaid_orders_expire_through_the_workers_sweep_within_its_interval(
    clean: Container,
) -> None:
    """Placing schedules nothing; the worker's ``expire_due_orders`` cron expires each order
    about one interval after its ``pay_by`` (SAQ's scheduler polls every second, so a run
    starts up to a second after its cron time), gives its units back, and never touches a
    paid order."""
    quick = with_settings(clean, card_payment_ttl=1.0, order_expiry_interval=1.0)
    option = await make_option(clean, stock=4, price=300)
    _, customer = await make_user(clean)
    async with http_client(create_app(quick)) as client:
        kept = (await place(client, customer, order_body((option, 1)))).json()
        unpaid = [(await place(client, customer, order_body((option, n)))).json() for n in (1, 2)]
        assert await clean.redis.keys("*expire*") == [], "no job per order"
        paid = await pay(client, quick, customer, kept["id"])
        assert paid.json()["status"] == "paid"
        assert (await clean.stock.available([option]))[option] == 0

        async def status(order_id: str) -> str:
            response = await client.get(f"/api/orders/{order_id}", headers=customer)
            return str(response.json()["status"])

        async def expired() -> bool:
            return all([await status(o["id"]) == "expired" for o in unpaid])

        async with running_worker(quick, jobs=False, crons=True):
            await eventually(expired, within=8)
            # The sweep commits the expiry before it releases the stock and reports back:
            # stopping the worker in between would cancel it half-done.
            await eventually(lambda: released_all(clean, [o["id"] for o in unpaid]), within=5)

        for placed in unpaid:
            order = await clean.orders.get(uuid.UUID(placed["id"]))
            assert order is not None and order.expired_at is not None
            late = (order.expired_at - order.pay_by).total_seconds()
            # One interval, SAQ's scheduler poll (1 s), a second for a loaded machine.
            assert 0 <= late < 3.0, f"expired {late:.2f}s after its pay_by"
        assert await status(kept["id"]) == "paid", "the expiry never touches a paid order"
        assert (await clean.stock.available([option]))[option] == 3
        assert await stock_and_ledger(clean, option) == (3, 3)
        listed = (await client.get("/api/orders", headers=customer)).json()["items"]
        assert [o["id"] for o in listed] == [kept["id"]], "expired orders leave the list"
        refused = await start_payment(client, customer, unpaid[0]["id"])
        assert refused.status_code == 409
        assert refused.json()["extra"] == {"state": "expired"}


async def released_all(container: Container, order_ids: list[str]) -> bool:
    orders = [await container.orders.get(uuid.UUID(o)) for o in order_ids]
    return all(o is not None and o.stock_released_at is not None for o in orders)


async def test_an_expiry_job_left_by_an_earlier_version_still_runs(clean: Container) -> None:
    """Earlier versions enqueued ``expire_order`` per order: after an upgrade those jobs must
    still find their function (and do what they did), though nothing enqueues them now."""
    quick = with_settings(clean, card_payment_ttl=0.5)
    option = await make_option(clean, stock=2, price=300)
    _, customer = await make_user(clean)
    async with http_client(create_app(quick)) as client:
        placed = (await place(client, customer, order_body((option, 2)))).json()
    await asyncio.sleep(0.6)
    key = f"expire:{placed['id']}"
    await clean.queue.enqueue(EXPIRE_ORDER_JOB, key=key, order_id=placed["id"])

    async def finished() -> bool:
        job = await clean.queue.job(key)
        return job is not None and job.status in (Status.COMPLETE, Status.FAILED)

    async with running_worker(quick, jobs=True, crons=False):
        await eventually(finished, within=6)
    job = await clean.queue.job(key)
    assert job is not None
    assert (job.status, job.result) == (Status.COMPLETE, True)
    assert (await clean.stock.available([option]))[option] == 2


async def test_a_payment_after_the_deadline_is_refused_before_the_sweep_runs(
    clean: Container,
) -> None:
    """The gateway's success arrives after pay_by but before the expiry sweep: the order expires
    there and then (its units go back), and the money is refunded automatically."""
    quick = with_settings(clean, card_payment_ttl=0.5)
    option = await make_option(clean, stock=2, price=300)
    _, customer = await make_user(clean)
    async with http_client(create_app(quick)) as client:
        order = (await place(client, customer, order_body((option, 2)))).json()
        payment = (await start_payment(client, customer, order["id"])).json()
        await asyncio.sleep(0.6)
        refused = await start_payment(client, customer, order["id"])
        late = await send(client, quick, event(payment))
        final = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()
    assert refused.status_code == 409
    assert late.status_code == 200, late.text
    assert final["status"] == "expired"
    assert (await clean.stock.available([option]))[option] == 2
    (recorded,) = await clean.payments.listing(limit=1)
    assert (recorded.status.value, recorded.refund_reason) == ("refund_pending", "late")


def test_the_worker_sweeps_for_due_orders_every_expiry_interval(clean: Container) -> None:
    settings = msgspec.structs.replace(clean.settings, order_expiry_interval=1.0)
    crons = {c.function.__qualname__: c.cron for c in cron_jobs(settings)}
    assert crons["expire_due_orders"] == every(1.0)
    assert crons["release_stock_of_closed_orders"] == every(settings.order_sweep_interval)
    assert "expire_overdue_orders" not in crons
    assert EXPIRE_ORDER_JOB in {f.__qualname__ for f in job_functions()}

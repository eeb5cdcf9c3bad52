"""Payment deadlines with a real SAQ worker: the scheduled job, and the sweep for lost jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from saq.job import Status

from shop.bootstrap import QUEUE_NAME, Container
from shop.entrypoints.http.app import create_app
from shop.entrypoints.workers import build_worker, cron_jobs, job_functions
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


async def test_unpaid_orders_expire_and_their_units_go_back_on_sale(clean: Container) -> None:
    quick = with_settings(clean, card_payment_ttl=1.0, order_sweep_interval=1.0)
    option = await make_option(clean, stock=4, price=300)
    _, customer = await make_user(clean)
    async with http_client(create_app(quick)) as client:
        kept = (await place(client, customer, order_body((option, 1)))).json()
        unpaid = (await place(client, customer, order_body((option, 2)))).json()
        lost = (await place(client, customer, order_body((option, 1)))).json()
        # The job of one order is lost with Redis: only the sweep can expire it.
        lost_job = clean.queue.job_id(f"expire:{lost['id']}")
        assert await clean.redis.delete(lost_job) == 1
        assert await clean.redis.zrem(f"saq:{QUEUE_NAME}:incomplete", lost_job) == 1
        paid = await pay(client, quick, customer, kept["id"])
        assert paid.json()["status"] == "paid"
        assert (await clean.stock.available([option]))[option] == 0

        async def status(order_id: str) -> str:
            response = await client.get(f"/api/orders/{order_id}", headers=customer)
            return str(response.json()["status"])

        async def expired(order_id: str) -> bool:
            return await status(order_id) == "expired"

        async def finished(key: str) -> bool:
            job = await clean.queue.job(key)
            return job is not None and job.status in (Status.COMPLETE, Status.FAILED)

        async with running_worker(quick, jobs=True, crons=False):
            await eventually(lambda: expired(unpaid["id"]), within=6)
            # The job commits the expiry before it releases the stock and reports back:
            # stopping the worker in between would cancel it half-reported.
            await eventually(lambda: finished(f"expire:{unpaid['id']}"), within=6)
        job = await clean.queue.job(f"expire:{unpaid['id']}")
        assert job is not None
        assert (job.status, job.result) == (Status.COMPLETE, True), "its own job expired it"
        assert await status(lost["id"]) == "pending_payment", "no job left for this one"

        async with running_worker(quick, jobs=False, crons=True):
            await eventually(lambda: expired(lost["id"]), within=6)

        assert await status(kept["id"]) == "paid", "the expiry never touches a paid order"
        assert (await clean.stock.available([option]))[option] == 3
        assert await stock_and_ledger(clean, option) == (3, 3)
        listed = (await client.get("/api/orders", headers=customer)).json()["items"]
        assert [o["id"] for o in listed] == [kept["id"]], "expired orders leave the list"
        late = await start_payment(client, customer, unpaid["id"])
        assert late.status_code == 409
        assert late.json()["extra"] == {"state": "expired"}


async def test_a_payment_after_the_deadline_is_refused_before_the_job_runs(
    clean: Container,
) -> None:
    """The gateway's success arrives after pay_by but before the expiry job: the order expires
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


async def test_the_worker_registers_the_job_the_scheduler_enqueues(clean: Container) -> None:
    from shop.bootstrap import EXPIRE_ORDER_JOB

    assert EXPIRE_ORDER_JOB in {f.__qualname__ for f in job_functions()}
    names = {c.function.__qualname__ for c in cron_jobs(clean.settings)}
    assert {"expire_overdue_orders", "release_stock_of_closed_orders"} <= names

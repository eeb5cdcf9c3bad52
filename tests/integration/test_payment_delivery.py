"""The sandbox's side of a webhook: the job it enqueues, the signed POST, the CLI simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from litestar import Litestar

from shop.adapters.payments.webhook_delivery import HttpWebhookDelivery, WebhookRefused
from shop.bootstrap import SANDBOX_WEBHOOK_JOB, Container, webhook_secret_of
from shop.entrypoints.cli import main
from shop.entrypoints.workers import build_worker, job_functions
from tests.conftest import TEST_JWT_SECRET
from tests.factories import make_option, make_user
from tests.orders_client import order_body, place
from tests.payments_client import run_sandbox_job, start_payment


def test_the_worker_runs_the_job_the_sandbox_enqueues() -> None:
    assert SANDBOX_WEBHOOK_JOB in {f.__qualname__ for f in job_functions()}


async def test_a_refused_delivery_raises_so_the_job_is_retried() -> None:
    async def down(_: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"status_code": 503})

    sender = HttpWebhookDelivery(
        "http://shop.example", "s" * 40, transport=httpx.MockTransport(down)
    )
    with pytest.raises(WebhookRefused, match="503"):
        await sender.deliver("{}")


async def test_simulate_from_the_cli_enqueues_a_retried_signed_delivery(
    clean: Container, app: Litestar, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    option = await make_option(clean, stock=3, price=250)
    _, customer = await make_user(clean)
    order = (await place(client, customer, order_body((option, 1)))).json()
    payment = (await start_payment(client, customer, order["id"])).json()
    env = {
        "SHOP_DATABASE_URL": clean.settings.database_url,
        "SHOP_REDIS_URL": clean.settings.redis_url,
        "SHOP_JWT_SECRET": TEST_JWT_SECRET,
        "SHOP_PAYMENT_WEBHOOK_SECRET": webhook_secret_of(clean.settings),
        "SHOP_DATA_DIR": str(tmp_path),
        "SHOP_LOG_LEVEL": "WARNING",
    }
    result = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["payments", "simulate", payment["payment_id"], "--succeed"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    key = f"sandbox:{payment['payment_id']}:payment.succeeded:-"
    assert key in result.output
    job = await clean.queue.job(key)
    assert job is not None
    assert job.retries >= 3 and job.retry_backoff, "a provider retries with backoff"
    assert await run_sandbox_job(clean, app, key) == 200
    paid = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()
    assert paid["status"] == "paid"


async def test_the_resend_sweep_finds_refunds_left_pending(
    clean: Container, client: httpx.AsyncClient
) -> None:
    option = await make_option(clean, stock=3, price=250)
    _, customer = await make_user(clean)
    order = (await place(client, customer, order_body((option, 1)))).json()
    payment = (await start_payment(client, customer, order["id"])).json()
    await client.post(f"/api/orders/{order['id']}/cancel", headers=customer)
    assert await pay_in_domain_late(clean, payment) == "cancelled"
    now = clean.clock.now()
    assert await clean.payments.awaiting_refund(now - timedelta(hours=1), limit=10) == []
    (pending,) = await clean.payments.awaiting_refund(now + timedelta(seconds=1), limit=10)
    assert (pending.id, pending.refund_reason) == (uuid.UUID(payment["payment_id"]), "late")
    assert await clean.payment_cases.resend_refunds(timedelta(0)) == 1


async def pay_in_domain_late(clean: Container, payment: dict[str, object]) -> str:
    """The gateway's success for a payment whose order was cancelled meanwhile."""
    from shop.domain.payments.model import EventType, GatewayEvent

    await clean.payment_cases.accept(
        GatewayEvent(
            id=f"evt_{uuid.uuid4().hex}",
            type=EventType.PAYMENT_SUCCEEDED,
            created=0,
            payment_id=uuid.UUID(str(payment["payment_id"])),
            amount=int(str(payment["amount"])),
            currency=str(payment["currency"]),
        )
    )
    order = await clean.orders.get(uuid.UUID(str(payment["order_id"])))
    assert order is not None
    return order.status.value


async def test_a_shop_that_was_down_receives_the_event_on_a_retry(
    clean: Container, app: Litestar, client: httpx.AsyncClient
) -> None:
    """The real worker runs the sandbox's job: the first delivery finds the shop down (503),
    SAQ retries it with backoff, the second reaches the webhook and the order is paid."""
    option = await make_option(clean, stock=3, price=250)
    _, customer = await make_user(clean)
    order = (await place(client, customer, order_body((option, 1)))).json()
    payment = (await start_payment(client, customer, order["id"])).json()
    shop = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    attempts: list[int] = []

    async def down_once(request: httpx.Request) -> httpx.Response:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            return httpx.Response(503, json={"status_code": 503, "detail": "down"})
        return await shop.handle_async_request(request)

    delivering = dataclasses.replace(
        clean,
        webhook_delivery=HttpWebhookDelivery(
            "http://testserver",
            webhook_secret_of(clean.settings),
            transport=httpx.MockTransport(down_once),
        ),
    )
    pressed = await client.post(f"/sandbox/checkout/{payment['payment_id']}/pay")
    assert pressed.status_code == 200
    worker = build_worker(
        delivering.settings, container=delivering, functions=job_functions(), crons=[]
    )
    task = asyncio.create_task(worker.start())
    try:
        for _ in range(150):
            status = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()
            if status["status"] == "paid":
                break
            await asyncio.sleep(0.1)
    finally:
        await worker.stop()
        await task
        await worker.queue.disconnect()
    assert status["status"] == "paid"
    assert len(attempts) == 2, "refused once, delivered on the retry"

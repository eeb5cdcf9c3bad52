"""Paying as the gateway does it: start a payment over HTTP, then deliver a signed event to
the webhook. Tests that need a paid order go through here; no route lets a customer pay."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import httpx
from litestar import Litestar

from shop.adapters.payments.webhook_delivery import HttpWebhookDelivery
from shop.bootstrap import Container, webhook_secret_of
from shop.domain.clock import Clock
from shop.domain.payments import services as payment_services
from shop.domain.payments.model import EventType, GatewayEvent
from shop.domain.payments.signature import SIGNATURE_HEADER, sign
from shop.entrypoints.workers import deliver_sandbox_webhook
from tests.jobs import job_context


def event(
    payment: dict[str, Any],
    kind: str = "payment.succeeded",
    *,
    event_id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    """An event about ``payment`` (a PaymentOut body); ``data`` overrides its fields."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": kind,
        "created": int(time.time()),
        "data": {
            "payment_id": payment["payment_id"],
            "amount": payment["amount"],
            "currency": payment["currency"],
            **data,
        },
    }


def signed(
    container: Container,
    body: dict[str, Any] | bytes,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    header = sign(
        secret or webhook_secret_of(container.settings),
        raw,
        timestamp=int(time.time()) if timestamp is None else timestamp,
    )
    return raw, {SIGNATURE_HEADER: header, "Content-Type": "application/json"}


async def send(
    client: httpx.AsyncClient, container: Container, body: dict[str, Any], **signing: Any
) -> httpx.Response:
    raw, headers = signed(container, body, **signing)
    return await client.post("/api/payments/webhook", content=raw, headers=headers)


async def start_payment(
    client: httpx.AsyncClient, headers: dict[str, str], order_id: str
) -> httpx.Response:
    return await client.post(f"/api/orders/{order_id}/payments", headers=headers)


async def pay(
    client: httpx.AsyncClient, container: Container, headers: dict[str, str], order_id: str
) -> httpx.Response:
    """Start a payment and let the gateway report its success; the order afterwards (or the
    refusal to start the payment)."""
    started = await start_payment(client, headers, order_id)
    if not started.is_success:
        return started
    answered = await send(client, container, event(started.json()))
    assert answered.status_code == 200, answered.text
    return await client.get(f"/api/orders/{order_id}", headers=headers)


async def payments_of(client: httpx.AsyncClient, admin: dict[str, str], order_id: str) -> Any:
    listed = await client.get("/api/admin/payments", params={"order_id": order_id}, headers=admin)
    assert listed.status_code == 200, listed.text
    return listed.json()


async def run_sandbox_job(container: Container, app: Litestar, key: str) -> int:
    """Run the sandbox's enqueued delivery job for real (the worker's own job function),
    POSTing to ``app`` in this event loop instead of over a socket."""
    job = await container.queue.job(key)
    assert job is not None, f"no job {key}"
    delivering = dataclasses.replace(
        container,
        webhook_delivery=HttpWebhookDelivery(
            "http://testserver",
            webhook_secret_of(container.settings),
            transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        ),
    )
    async with job_context(delivering) as ctx:
        return await deliver_sandbox_webhook(ctx, **(job.kwargs or {}))


async def pay_in_domain(
    container: Container, order_id: uuid.UUID, user_id: uuid.UUID, *, clock: Clock | None = None
) -> str:
    """The payment use cases a webhook runs, called directly (for adapter-level races): start
    a payment, take the gateway's success. The order's status afterwards."""
    when = clock or container.clock
    started = await payment_services.start_payment(
        order_id,
        user_id=user_id,
        currency=container.settings.currency,
        payments=container.payments,
        gateway=container.gateway,
        clock=when,
    )
    payment = started.payment
    await payment_services.accept_event(
        GatewayEvent(
            id=f"evt_{uuid.uuid4().hex}",
            type=EventType.PAYMENT_SUCCEEDED,
            created=0,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
        ),
        payments=container.payments,
        gateway=container.gateway,
        orders=container.orders,
        stock=container.stock,
        clock=when,
    )
    final = await container.orders.get(order_id)
    assert final is not None
    return final.status.value

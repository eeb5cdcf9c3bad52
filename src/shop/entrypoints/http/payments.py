"""Payments over HTTP: start a payment, the gateway's signed webhook, the admin's view, and
the sandbox gateway's checkout page.

The webhook carries no bearer token (the provider has none): it is exempt from auth and is
trusted only through its ``Shop-Signature``, verified over the raw body before anything is
parsed. Handlers parse, call one use case and render; the rules live in
``shop.domain.payments``.
"""

from __future__ import annotations

import html
import time
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from shop.bootstrap import Container, SandboxGateway, webhook_secret_of
from shop.domain.errors import MalformedRequest, NotFound
from shop.domain.identity.model import Principal
from shop.domain.payments.model import EventType, GatewayEvent, Payment, PaymentStatus
from shop.domain.payments.services import Outcome
from shop.domain.payments.signature import SIGNATURE_HEADER, verify
from shop.entrypoints.http.auth import requires_admin
from shop.entrypoints.http.bounds import Amount
from shop.entrypoints.http.openapi import raises


class PaymentOut(msgspec.Struct):
    payment_id: uuid.UUID
    order_id: uuid.UUID
    status: str
    amount: int
    currency: str
    checkout_url: str
    expires_at: datetime
    provider: str
    created_at: datetime
    succeeded_at: datetime | None = None
    failed_at: datetime | None = None
    refund_id: str | None = None
    refund_reason: str | None = None
    refund_requested_at: datetime | None = None
    refunded_at: datetime | None = None
    refund_failed_at: datetime | None = None

    @classmethod
    def from_domain(cls, payment: Payment) -> PaymentOut:
        return cls(
            payment_id=payment.id,
            order_id=payment.order_id,
            status=payment.status.value,
            amount=payment.amount,
            currency=payment.currency,
            checkout_url=payment.checkout_url,
            expires_at=payment.expires_at,
            provider=payment.provider,
            created_at=payment.created_at,
            succeeded_at=payment.succeeded_at,
            failed_at=payment.failed_at,
            refund_id=payment.refund_id,
            refund_reason=None if payment.refund_reason is None else payment.refund_reason.value,
            refund_requested_at=payment.refund_requested_at,
            refunded_at=payment.refunded_at,
            refund_failed_at=payment.refund_failed_at,
        )


class EventDataIn(msgspec.Struct, forbid_unknown_fields=False):
    payment_id: uuid.UUID
    amount: Amount
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
    refund_id: str | None = None
    order_id: uuid.UUID | None = None


class EventIn(msgspec.Struct, forbid_unknown_fields=False):
    """The gateway's event, as documented in the README's webhook contract."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    type: EventType
    created: int
    data: EventDataIn

    def to_domain(self, digest: str) -> GatewayEvent:
        return GatewayEvent(
            id=self.id,
            type=self.type,
            created=self.created,
            payment_id=self.data.payment_id,
            amount=self.data.amount,
            currency=self.data.currency,
            refund_id=self.data.refund_id,
            order_id=self.data.order_id,
            digest=digest,
        )


class WebhookOut(msgspec.Struct):
    received: bool
    outcome: str


class PaymentController(Controller):
    path = "/api/orders/{order_id:uuid}/payments"
    tags = ["payments"]

    @post(
        operation_id="StartPayment",
        responses=raises(409, also=(200, PaymentOut)),
        summary="Start paying an order with the configured gateway",
        description="201 with a new payment and the gateway's checkout_url; 200 with the "
        "payment already open for this order; 409 when the order does not await payment or "
        "is past its pay_by. The order is paid only by the gateway's signed webhook.",
    )
    async def start(
        self,
        order_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
    ) -> Response[PaymentOut]:
        started = await container.payment_cases.start(order_id, user_id=principal.user_id)
        return Response(
            PaymentOut.from_domain(started.payment),
            status_code=HTTP_201_CREATED if started.created else HTTP_200_OK,
        )


class WebhookController(Controller):
    path = "/api/payments/webhook"
    tags = ["payments"]

    @post(
        operation_id="PaymentWebhook",
        exclude_from_auth=True,
        # The provider's contract, not the client API's: documented in the README (webhook
        # contract). Its only caller signs the raw body, which no schema can generate.
        include_in_schema=False,
        status_code=HTTP_200_OK,
        summary="The payment gateway's signed event (no bearer token)",
        description=f"Signed in {SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex HMAC-SHA256 of "
        "'<t>.<raw body>'>. 400 for a missing, malformed, wrong or stale (>300 s) signature "
        "or a malformed event; 404 for an unknown payment; 422 when amount or currency do "
        "not match; 200 for a replayed event id (nothing changes).",
    )
    async def receive(
        self, request: Request[Any, Any, Any], container: NamedDependency[Container]
    ) -> WebhookOut:
        body = await request.body()
        verify(
            webhook_secret_of(container.settings),
            body,
            request.headers.get(SIGNATURE_HEADER),
            now=time.time(),
        )
        try:
            event = msgspec.json.decode(body, type=EventIn)
        except msgspec.DecodeError as exc:
            raise MalformedRequest(f"the event is not valid: {exc}") from None
        outcome = await container.payment_cases.accept(
            event.to_domain(GatewayEvent.digest_of(body))
        )
        if outcome is Outcome.APPLIED:
            container.observer.payment_event(event.type.value)
        return WebhookOut(received=True, outcome=outcome.value)


class AdminPaymentController(Controller):
    path = "/api/admin/payments"
    tags = ["payments", "admin"]
    guards = [requires_admin]

    @get(
        operation_id="ListPayments",
        summary="Payments newest first, with their refunds (automatic ones included)",
    )
    async def list_payments(
        self,
        container: NamedDependency[Container],
        order_id: Annotated[uuid.UUID | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> list[PaymentOut]:
        found = await container.payments.listing(order_id=order_id, limit=limit)
        return [PaymentOut.from_domain(payment) for payment in found]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sandbox checkout</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto}}
button{{font-size:1.1rem;padding:.5rem 1.5rem;margin-right:1rem}}</style></head>
<body><h1>Sandbox checkout</h1>
<p>No real money moves here: this page stands in for a payment provider.</p>
<p>Payment <code>{payment_id}</code> · {amount} {currency} (minor units) · status
<strong>{status}</strong></p>
{actions}
</body></html>"""
_ACTIONS = """<form method="post" action="{base}/pay" style="display:inline">
<button type="submit">{pay}</button></form>
<form method="post" action="{base}/decline" style="display:inline">
<button type="submit">{decline}</button></form>"""


def _page(payment: Payment, note: str = "") -> Response[str]:
    base = f"/sandbox/checkout/{payment.id}"
    refund = payment.status is PaymentStatus.REFUND_PENDING
    actions = (
        _ACTIONS.format(
            base=base,
            pay="Confirm refund" if refund else "Pay",
            decline="Fail refund" if refund else "Decline",
        )
        if payment.status in (PaymentStatus.PENDING, PaymentStatus.REFUND_PENDING)
        else ""
    )
    if note:
        actions = f"<p>{html.escape(note)}</p>" + actions
    return Response(
        _PAGE.format(
            payment_id=html.escape(str(payment.id)),
            amount=payment.amount,
            currency=html.escape(payment.currency),
            status=html.escape(payment.status.value),
            actions=actions,
        ),
        media_type=MediaType.HTML,
    )


def _sandbox(container: Container) -> SandboxGateway:
    sandbox = container.sandbox
    if sandbox is None:
        raise NotFound("the sandbox gateway is not active")
    return sandbox


class SandboxCheckoutController(Controller):
    """Only registered while the sandbox is the configured gateway. No bearer token: the
    customer's browser follows checkout_url, as it would to a real provider's page."""

    path = "/sandbox/checkout/{payment_id:uuid}"
    tags = ["sandbox"]
    include_in_schema = False

    @get(operation_id="SandboxCheckout", exclude_from_auth=True, media_type=MediaType.HTML)
    async def page(
        self, payment_id: FromPath[uuid.UUID], container: NamedDependency[Container]
    ) -> Response[str]:
        return _page(await _sandbox(container).payment(payment_id))

    @post(
        "/pay",
        operation_id="SandboxPay",
        exclude_from_auth=True,
        status_code=HTTP_200_OK,
        media_type=MediaType.HTML,
    )
    async def pay(
        self, payment_id: FromPath[uuid.UUID], container: NamedDependency[Container]
    ) -> Response[str]:
        return await self._press(payment_id, container, succeed=True)

    @post(
        "/decline",
        operation_id="SandboxDecline",
        exclude_from_auth=True,
        status_code=HTTP_200_OK,
        media_type=MediaType.HTML,
    )
    async def decline(
        self, payment_id: FromPath[uuid.UUID], container: NamedDependency[Container]
    ) -> Response[str]:
        return await self._press(payment_id, container, succeed=False)

    @staticmethod
    async def _press(
        payment_id: uuid.UUID, container: Container, *, succeed: bool
    ) -> Response[str]:
        sandbox = _sandbox(container)
        await sandbox.simulate(payment_id, succeed=succeed)
        return _page(
            await sandbox.payment(payment_id),
            "Sent: the sandbox is delivering the signed event to the shop's webhook.",
        )

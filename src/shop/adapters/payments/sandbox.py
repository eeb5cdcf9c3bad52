"""``SandboxGateway``: a stand-in payment provider that behaves like a real one over HTTP.

``start`` hands out a checkout page served by the shop itself (``/sandbox/checkout/{id}``,
only while the sandbox is the configured gateway). Pressing Pay or Decline there, or
``shop payments simulate``, enqueues a SAQ job that POSTs a signed event to the shop's
webhook: asynchronously, with retries and backoff, exactly the path a real provider's event
takes. Refunds asked for are confirmed the same way (``refund.succeeded``). Nothing here
touches an order: only the webhook does.
"""

from __future__ import annotations

import time
import uuid

import msgspec
from saq import Queue

from shop.domain.errors import NotFound
from shop.domain.payments.model import Checkout, EventType, Payment, PaymentStatus
from shop.domain.payments.ports import Payments

# The worker registers a job function under this name (entrypoints/workers.py).
SANDBOX_WEBHOOK_JOB = "deliver_sandbox_webhook"
CHECKOUT_PATH = "/sandbox/checkout"


def sandbox_job_key(payment_id: uuid.UUID, event_type: EventType, refund_id: str | None) -> str:
    """One job per (payment, event type, refund): pressing Pay twice sends one event."""
    return f"sandbox:{payment_id}:{event_type.value}:{refund_id or '-'}"


class SandboxGateway:
    name = "sandbox"

    def __init__(
        self,
        queue: Queue,
        payments: Payments,
        *,
        public_url: str,
        retries: int = 8,
        retry_delay: float = 1.0,
    ) -> None:
        self._queue = queue
        self._payments = payments
        self._public_url = public_url.rstrip("/")
        self._retries = retries
        self._retry_delay = retry_delay

    async def start(self, payment: Payment) -> Checkout:
        return Checkout(
            provider_reference=f"sbx_{payment.id.hex}",
            checkout_url=f"{self._public_url}{CHECKOUT_PATH}/{payment.id}",
        )

    async def refund(self, payment: Payment, refund_id: str) -> None:
        await self.send(payment, EventType.REFUND_SUCCEEDED, refund_id=refund_id)

    async def payment(self, payment_id: uuid.UUID) -> Payment:
        payment = await self._payments.get(payment_id)
        if payment is None or payment.provider != self.name:
            raise NotFound("payment not found")
        return payment

    async def simulate(self, payment_id: uuid.UUID, *, succeed: bool) -> str:
        """What the customer's press (or the CLI) asks the sandbox to report: the payment's
        outcome, or for a payment whose refund is pending, the refund's."""
        payment = await self.payment(payment_id)
        if payment.status is PaymentStatus.REFUND_PENDING:
            kind = EventType.REFUND_SUCCEEDED if succeed else EventType.REFUND_FAILED
            return await self.send(payment, kind, refund_id=payment.refund_id)
        kind = EventType.PAYMENT_SUCCEEDED if succeed else EventType.PAYMENT_FAILED
        return await self.send(payment, kind)

    async def send(
        self, payment: Payment, event_type: EventType, *, refund_id: str | None = None
    ) -> str:
        """Enqueue the signed delivery of one event; returns the job's key. The event id is
        fixed here, so every retry of the job carries the same id."""
        data: dict[str, object] = {
            "payment_id": str(payment.id),
            "order_id": str(payment.order_id),
            "amount": payment.amount,
            "currency": payment.currency,
        }
        if refund_id is not None:
            data["refund_id"] = refund_id
        body = msgspec.json.encode(
            {
                "id": f"evt_{uuid.uuid4().hex}",
                "type": event_type.value,
                "created": int(time.time()),
                "data": data,
            }
        ).decode()
        key = sandbox_job_key(payment.id, event_type, refund_id)
        await self._queue.enqueue(
            SANDBOX_WEBHOOK_JOB,
            key=key,
            retries=self._retries,
            retry_delay=self._retry_delay,
            retry_backoff=True,
            body=body,
        )
        return key

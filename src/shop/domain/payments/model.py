"""Payments and the gateway's events: one ``Payment`` per attempt to pay an order.

```
pending ──payment.succeeded──> succeeded ──refund asked──> refund_pending ──refund.succeeded──┐
   │                              ^                              │                           v
   └──payment.failed──> failed    └──────refund.failed───────────┘                       refunded
                            (a customer's refund; an automatic one fails to refund_failed)
```

A refund is asked for by the customer (``refund_reason = "customer"``) or by the shop itself
when a success arrives for an order that can no longer be paid (expired, cancelled, or paid
by another attempt: ``"late"``); either way it is recorded on the payment, which the admin
lists. Amounts are integer minor units in the shop's currency.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shop.domain.errors import InvalidInput, InvalidState


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"
    # An automatic refund (late or cancelled) the gateway could not make: the shop holds
    # money for an order it will not fulfil, and an admin must act (it is listed for them).
    REFUND_FAILED = "refund_failed"


class EventType(StrEnum):
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"


class RefundReason(StrEnum):
    CUSTOMER = "customer"
    # The customer cancelled a paid order before shipping.
    CANCELLED = "cancelled"
    # Money arrived for an order that expired, was cancelled or was already paid.
    LATE = "late"


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """What the gateway reports, after its signature was verified."""

    id: str
    type: EventType
    created: int
    payment_id: uuid.UUID
    amount: int
    currency: str
    refund_id: str | None = None
    order_id: uuid.UUID | None = None
    digest: str = ""

    @staticmethod
    def digest_of(body: bytes) -> str:
        """Kept in the audit trail instead of the payload: proves what was received."""
        return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkout:
    """Where the gateway sends the customer, and its own name for the payment."""

    provider_reference: str
    checkout_url: str


@dataclass(slots=True)
class Payment:
    id: uuid.UUID
    order_id: uuid.UUID
    provider: str
    amount: int
    currency: str
    status: PaymentStatus
    created_at: datetime
    expires_at: datetime
    provider_reference: str = ""
    checkout_url: str = ""
    updated_at: datetime | None = None
    succeeded_at: datetime | None = None
    failed_at: datetime | None = None
    refund_id: str | None = None
    refund_reason: RefundReason | None = None
    refund_requested_at: datetime | None = None
    refunded_at: datetime | None = None
    refund_failed_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status is PaymentStatus.PENDING

    def check_matches(self, event: GatewayEvent) -> None:
        """The event must be about this payment's money: amount and currency as started."""
        if event.amount != self.amount or event.currency != self.currency:
            raise InvalidInput(
                "the event's amount or currency does not match the payment",
                extra={
                    "amount": event.amount,
                    "currency": event.currency,
                    "expected_amount": self.amount,
                    "expected_currency": self.currency,
                },
            )
        if event.order_id is not None and event.order_id != self.order_id:
            raise InvalidInput("the event names another order than the payment's")

    def succeed(self, now: datetime) -> bool:
        if self.status is not PaymentStatus.PENDING and self.status is not PaymentStatus.FAILED:
            return False  # already counted: a duplicate success changes nothing
        self.status = PaymentStatus.SUCCEEDED
        self.succeeded_at = self.updated_at = now
        return True

    def fail(self, now: datetime) -> bool:
        if self.status is not PaymentStatus.PENDING:
            return False  # a late decline never undoes a success
        self.status = PaymentStatus.FAILED
        self.failed_at = self.updated_at = now
        return True

    def ask_refund(self, reason: RefundReason, now: datetime) -> str:
        """Mark the refund asked for; returns its id (the gateway's refund events carry it)."""
        if self.status is PaymentStatus.REFUND_PENDING and self.refund_id is not None:
            return self.refund_id
        if self.status is not PaymentStatus.SUCCEEDED:
            raise InvalidState(
                f"cannot refund a payment that is {self.status.value}", state=self.status.value
            )
        self.status = PaymentStatus.REFUND_PENDING
        self.refund_id = f"re_{uuid.uuid4().hex}"
        self.refund_reason = reason
        self.refund_requested_at = self.updated_at = now
        return self.refund_id

    def refund_settled(self, refund_id: str | None, now: datetime) -> bool:
        if self.status is PaymentStatus.REFUNDED:
            return False
        self._check_refund(refund_id)
        self.status = PaymentStatus.REFUNDED
        self.refunded_at = self.updated_at = now
        return True

    def refund_failed(self, refund_id: str | None, now: datetime) -> bool:
        """A customer's refund that failed leaves the payment succeeded (they may ask again);
        an automatic one is left ``refund_failed`` for an admin."""
        if self.status is not PaymentStatus.REFUND_PENDING:
            return False
        self._check_refund(refund_id)
        self.status = (
            PaymentStatus.SUCCEEDED
            if self.refund_reason is RefundReason.CUSTOMER
            else PaymentStatus.REFUND_FAILED
        )
        self.refund_failed_at = self.updated_at = now
        return True

    def _check_refund(self, refund_id: str | None) -> None:
        if self.status is not PaymentStatus.REFUND_PENDING:
            raise InvalidInput(f"no refund is pending for this payment ({self.status.value})")
        if refund_id != self.refund_id:
            raise InvalidInput("the event names another refund than the one pending")

"""Ports of the payments module. Adapters satisfy them structurally (no base classes)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from shop.domain.orders.model import Order
from shop.domain.payments.model import Checkout, GatewayEvent, Payment


class PaymentGateway(Protocol):
    """The payment provider. Its answers about money come back later, as signed events on
    the webhook; these calls only start things. A real provider is one adapter module."""

    name: str

    async def start(self, payment: Payment) -> Checkout:
        """Open a payment with the provider; where the customer goes to pay."""
        ...

    async def refund(self, payment: Payment, refund_id: str) -> None:
        """Ask the provider to return the payment's money; ``refund.succeeded`` or
        ``refund.failed`` (carrying ``refund_id``) follows on the webhook. Asked again with
        the same ``refund_id`` (the resend sweep) it must not refund twice: pass it to the
        provider as the idempotency key."""
        ...


class PaymentBook(Protocol):
    """One order and its payments, locked and changed in one transaction.

    The order row is locked first (``FOR UPDATE``, the same lock every order transition
    takes), then its payments: so a webhook, the expiry sweep and a cancel on one order are
    decided one after the other. Everything done in the block (order, payments, event
    record) is committed when it exits normally and discarded when it raises.
    """

    @property
    def order(self) -> Order: ...

    @property
    def payments(self) -> Sequence[Payment]:
        """Oldest first, including those added in this block."""
        ...

    def add(self, payment: Payment) -> None: ...

    async def record(self, event: GatewayEvent) -> bool:
        """Append the event to the audit trail; ``False`` if its id was seen before (a
        replay: the caller changes nothing)."""
        ...


class Payments(Protocol):
    """The payments repository."""

    def next_id(self) -> uuid.UUID: ...

    def book(self, order_id: uuid.UUID) -> AbstractAsyncContextManager[PaymentBook]:
        """The order and its payments, locked until the block ends; ``NotFound`` if unknown."""
        ...

    async def get(self, payment_id: uuid.UUID) -> Payment | None: ...

    async def awaiting_refund(self, asked_before: datetime, *, limit: int) -> Sequence[Payment]:
        """Payments whose refund was asked for before ``asked_before`` and is still pending."""
        ...

    async def listing(
        self, *, order_id: uuid.UUID | None = None, limit: int = 100
    ) -> Sequence[Payment]:
        """Newest first; the admin's view (refunds included)."""
        ...

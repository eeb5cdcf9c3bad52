"""In-memory ports of the payments module for the pure domain tests (no I/O). Typed against
the ports, so a drift in a port breaks mypy here."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from shop.domain.orders.model import Order
from shop.domain.payments.model import Checkout, GatewayEvent, Payment, PaymentStatus
from shop.domain.payments.ports import PaymentBook, PaymentGateway, Payments
from tests.unit.fakes import FakeOrders


@dataclass
class _Book:
    order: Order
    payments: list[Payment]
    events: dict[str, GatewayEvent]
    recorded: list[GatewayEvent] = field(default_factory=list)

    def add(self, payment: Payment) -> None:
        self.payments.append(payment)

    async def record(self, event: GatewayEvent) -> bool:
        if event.id in self.events or any(e.id == event.id for e in self.recorded):
            return False
        self.recorded.append(event)
        return True


class FakePayments:
    """Shares the order rows of a ``FakeOrders``: a book changes both, or neither on error."""

    def __init__(self, orders: FakeOrders) -> None:
        self.orders = orders
        self.rows: dict[uuid.UUID, Payment] = {}
        self.events: dict[str, GatewayEvent] = {}

    def next_id(self) -> uuid.UUID:
        return uuid.uuid4()

    @asynccontextmanager
    async def book(self, order_id: uuid.UUID) -> AsyncIterator[PaymentBook]:
        async with self.orders.locked(order_id) as order:
            mine = [copy.deepcopy(p) for p in self.rows.values() if p.order_id == order_id]
            working = _Book(order, mine, self.events)
            yield working
        for payment in working.payments:
            self.rows[payment.id] = copy.deepcopy(payment)
        for event in working.recorded:
            self.events[event.id] = event

    async def get(self, payment_id: uuid.UUID) -> Payment | None:
        found = self.rows.get(payment_id)
        return None if found is None else copy.deepcopy(found)

    async def awaiting_refund(self, asked_before: datetime, *, limit: int) -> Sequence[Payment]:
        return [
            copy.deepcopy(p)
            for p in self.rows.values()
            if p.status is PaymentStatus.REFUND_PENDING
            and p.refund_requested_at is not None
            and p.refund_requested_at <= asked_before
        ][:limit]

    async def listing(
        self, *, order_id: uuid.UUID | None = None, limit: int = 100
    ) -> Sequence[Payment]:
        found = [p for p in self.rows.values() if order_id in (None, p.order_id)]
        return [copy.deepcopy(p) for p in found][:limit]


class FakeGateway:
    name = "fake"

    def __init__(self) -> None:
        self.refunds: list[tuple[uuid.UUID, str]] = []

    async def start(self, payment: Payment) -> Checkout:
        return Checkout(f"fake_{payment.id.hex}", f"https://pay.example/{payment.id}")

    async def refund(self, payment: Payment, refund_id: str) -> None:
        self.refunds.append((payment.id, refund_id))


def _typed(payments: FakePayments, gateway: FakeGateway) -> tuple[Payments, PaymentGateway]:
    return payments, gateway

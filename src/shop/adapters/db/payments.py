"""``SqlPayments``: payments and the gateway's event log on PostgreSQL (SQLAlchemy Core).

A book is one transaction: the order row locked first (the lock every order transition
takes, so the webhook, the expiry sweep and a cancel queue up on it), then the order's payment
rows. The event record is an ``INSERT … ON CONFLICT DO NOTHING`` on the unique provider event
id inside that same transaction: twenty concurrent replays of one event wait on the order
lock, and all but the first find the id taken and change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from uuid_utils.compat import uuid7

from shop.adapters.db.orders import locked_order
from shop.adapters.db.tables import PaymentEventRow, PaymentRow
from shop.domain.orders.model import Order
from shop.domain.payments.model import GatewayEvent, Payment, PaymentStatus, RefundReason

payment_t = cast("Table", PaymentRow.__table__)
event_t = cast("Table", PaymentEventRow.__table__)

_COLUMNS = tuple(f.name for f in fields(Payment))


def _values(payment: Payment) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(payment, name) for name in _COLUMNS}
    values["status"] = payment.status.value
    values["refund_reason"] = None if payment.refund_reason is None else payment.refund_reason
    return values


def _to_payment(row: Row[Any]) -> Payment:
    data = {name: getattr(row, name) for name in _COLUMNS}
    data["status"] = PaymentStatus(row.status)
    data["refund_reason"] = None if row.refund_reason is None else RefundReason(row.refund_reason)
    data["amount"] = int(row.amount)
    return Payment(**data)


@dataclass
class SqlPaymentBook:
    """The ``PaymentBook`` of one open transaction."""

    conn: AsyncConnection
    order: Order
    payments: list[Payment]
    loaded: dict[uuid.UUID, dict[str, Any]]
    added: list[Payment] = field(default_factory=list)

    def add(self, payment: Payment) -> None:
        self.added.append(payment)
        self.payments.append(payment)

    async def record(self, event: GatewayEvent) -> bool:
        inserted = await self.conn.execute(
            pg_insert(event_t)
            .values(
                provider_event_id=event.id,
                payment_id=event.payment_id,
                type=event.type.value,
                payload_digest=event.digest,
            )
            .on_conflict_do_nothing(index_elements=["provider_event_id"])
            .returning(event_t.c.id)
        )
        return inserted.first() is not None

    async def flush(self) -> None:
        for payment in self.added:
            await self.conn.execute(insert(payment_t).values(**_values(payment)))
        for payment in self.payments:
            if payment in self.added:
                continue
            now = _values(payment)
            changed = {k: v for k, v in now.items() if self.loaded[payment.id][k] != v}
            if changed:
                await self.conn.execute(
                    update(payment_t).where(payment_t.c.id == payment.id).values(**changed)
                )


class SqlPayments:
    """The ``Payments`` port on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def next_id(self) -> uuid.UUID:
        return uuid7()

    @asynccontextmanager
    async def book(self, order_id: uuid.UUID) -> AsyncIterator[SqlPaymentBook]:
        async with self._engine.begin() as conn, locked_order(conn, order_id) as order:
            rows = (
                await conn.execute(
                    select(payment_t)
                    .where(payment_t.c.order_id == order_id)
                    .order_by(payment_t.c.created_at, payment_t.c.id)
                    .with_for_update()
                )
            ).all()
            payments = [_to_payment(row) for row in rows]
            book = SqlPaymentBook(conn, order, payments, {p.id: _values(p) for p in payments})
            yield book
            await book.flush()

    async def get(self, payment_id: uuid.UUID) -> Payment | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(payment_t).where(payment_t.c.id == payment_id))
            ).first()
        return None if row is None else _to_payment(row)

    async def awaiting_refund(self, asked_before: datetime, *, limit: int) -> Sequence[Payment]:
        stmt = (
            select(payment_t)
            .where(
                payment_t.c.status == PaymentStatus.REFUND_PENDING.value,
                payment_t.c.refund_requested_at <= asked_before,
            )
            .order_by(payment_t.c.refund_requested_at)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_to_payment(row) for row in rows]

    async def listing(
        self, *, order_id: uuid.UUID | None = None, limit: int = 100
    ) -> Sequence[Payment]:
        stmt = select(payment_t).order_by(payment_t.c.created_at.desc()).limit(limit)
        if order_id is not None:
            stmt = stmt.where(payment_t.c.order_id == order_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_to_payment(row) for row in rows]

"""``SqlOrders``: the orders repository on PostgreSQL, in SQLAlchemy Core.

Core rather than the ORM: an order is written once and then changes a status and a timestamp,
so an identity map and unit-of-work flushes would only add work on the purchase hot path.
That path costs two statements here, each on an autocommit connection (no BEGIN/COMMIT round
trips): one read (catalog prices + an earlier order under the same idempotency key) and one
write (order and lines in a single ``WITH … INSERT``, atomic as any single statement is).

Transitions lock the order row (``SELECT … FOR UPDATE``) for the length of the use case's
decision, so a payment racing the expiry sweep, or a cancel racing the shipment, is decided
one after the other on the committed state.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Row,
    Table,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from uuid_utils.compat import uuid7

from shop.adapters.db.reservation_claims import (
    GENERATION_ALIVE_SQL,
    ORDER,
    VOID,
    claim_void,
)
from shop.adapters.db.sqlstate import FOREIGN_KEY_VIOLATION, sqlstate_of
from shop.adapters.db.tables import OrderLineRow, OrderRow, sql_list
from shop.domain.errors import NotFound, OpenOrderLimitExceeded, OptionWithdrawn, Unauthorized
from shop.domain.orders.model import (
    OptionPrice,
    Order,
    OrderCursor,
    OrderLine,
    OrderPage,
    OrderStatus,
    PaymentMethod,
    Quote,
    reservation_key,
)

order_t = cast("Table", OrderRow.__table__)
line_t = cast("Table", OrderLineRow.__table__)

# Written by transitions; everything else on the row is fixed when the order is placed.
_MUTABLE = (
    "status",
    "paid_at",
    "shipped_at",
    "delivered_at",
    "cancelled_at",
    "expired_at",
    "refunded_at",
    "stock_released_at",
)


def _mutable_values(order: Order) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(order, name) for name in _MUTABLE}
    values["status"] = order.status.value
    return values


def _to_order(row: Row[Any], lines: Sequence[OrderLine]) -> Order:
    return Order(
        id=row.id,
        user_id=row.user_id,
        status=OrderStatus(row.status),
        payment_method=PaymentMethod(row.payment_method),
        pay_by=row.pay_by,
        total=int(row.total),
        shipping_address=row.shipping_address,
        idempotency_key=row.idempotency_key,
        reservation_key=row.reservation_key,
        request_fingerprint=row.request_fingerprint,
        lines=tuple(lines),
        created_at=row.created_at,
        paid_at=row.paid_at,
        shipped_at=row.shipped_at,
        delivered_at=row.delivered_at,
        cancelled_at=row.cancelled_at,
        expired_at=row.expired_at,
        refunded_at=row.refunded_at,
        stock_released_at=row.stock_released_at,
        drop_id=row.drop_id,
    )


async def _lines_of(
    conn: AsyncConnection, order_ids: Sequence[uuid.UUID]
) -> Mapping[uuid.UUID, list[OrderLine]]:
    found: dict[uuid.UUID, list[OrderLine]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return found
    rows = await conn.execute(
        select(
            line_t.c.order_id,
            line_t.c.option_id,
            line_t.c.product_id,
            line_t.c.quantity,
            line_t.c.unit_price,
        )
        .where(line_t.c.order_id.in_(list(order_ids)))
        .order_by(line_t.c.order_id, line_t.c.option_id)
    )
    for row in rows:
        found[row.order_id].append(
            OrderLine(
                option_id=int(row.option_id),
                product_id=int(row.product_id),
                quantity=int(row.quantity),
                unit_price=int(row.unit_price),
            )
        )
    return found


async def _orders_with_lines(conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Order]:
    lines = await _lines_of(conn, [row.id for row in rows])
    return [_to_order(row, lines[row.id]) for row in rows]


# The purchase path's two statements, written once as SQL and run on the pooled connection's
# asyncpg driver directly: building them per request with the expression language, and
# SQLAlchemy's cursor layer around asyncpg, cost more CPU than the round trips themselves
# (profiled with py-spy under ``shop bench``: ~40% of a purchase's CPU).
_QUOTE = """
    SELECT (SELECT id FROM purchase_order
             WHERE user_id = $1 AND idempotency_key = $2) AS existing,
           (SELECT outcome FROM reservation_claim WHERE key = $4) AS claim,
           option.id, option.product_id, option.price, option.drop_id
      FROM (SELECT 1) AS anchor
      LEFT JOIN option ON option.id = ANY($3::bigint[])
"""
# The claim on the reservation key ($9) decides whether the order and its lines are written:
# a racing twin of the same idempotency key, a sweep that claimed the key void, or a counter
# generation ($16, NULL for the PostgreSQL strategies) lost since the reservation makes this
# write nothing, which RETURNING reports (see reservation_claims).
_ADD = f"""
    WITH claim AS (
        INSERT INTO reservation_claim (key, outcome)
        SELECT $9, '{ORDER}'
         WHERE $16::text IS NULL OR {GENERATION_ALIVE_SQL % "$16::text"}
        ON CONFLICT (key) DO NOTHING
        RETURNING key
    ),
    new_order AS (
        INSERT INTO purchase_order (id, user_id, status, payment_method, pay_by, total,
                                    shipping_address, idempotency_key, reservation_key,
                                    request_fingerprint, created_at, drop_id)
        SELECT $1::uuid, $2::uuid, $3::varchar, $4::varchar, $5::timestamptz, $6::bigint,
               $7::text, $8::varchar, claim.key, $10::varchar, $11::timestamptz, $17::bigint
          FROM claim
        ON CONFLICT DO NOTHING
        RETURNING id
    )
    INSERT INTO order_line (order_id, option_id, product_id, quantity, unit_price)
    SELECT new_order.id, item.option_id, item.product_id, item.quantity, item.unit_price
      FROM new_order,
           unnest($12::bigint[], $13::bigint[], $14::integer[], $15::bigint[])
               AS item(option_id, product_id, quantity, unit_price)
    RETURNING order_id
"""
_STILL_LISTED = "SELECT id FROM option WHERE id = ANY($1::bigint[])"
# The open-order cap of a drop: one customer's orders in one drop queue on this lock, and
# each counts the unpaid orders the previous one committed (READ COMMITTED takes a fresh
# snapshot per statement, after the lock is granted), so two cannot both pass the cap.
_DROP_BUYER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
_OPEN_IN_DROP = f"""
    SELECT count(*) FROM purchase_order
     WHERE user_id = $1 AND drop_id = $2
       AND status IN ({sql_list(OrderStatus.values(OrderStatus.UNPAID))})
"""


@asynccontextmanager
async def locked_order(conn: AsyncConnection, order_id: uuid.UUID) -> AsyncIterator[Order]:
    """The order row locked (``FOR UPDATE``) in ``conn``'s transaction; what the block changed
    on it is written back when the block exits normally. Shared with the payments repository,
    whose transactions change an order and its payments together."""
    row = (
        await conn.execute(select(order_t).where(order_t.c.id == order_id).with_for_update())
    ).first()
    if row is None:
        raise NotFound("order not found")
    order = (await _orders_with_lines(conn, [row]))[0]
    loaded = _mutable_values(order)
    yield order
    changed = {k: v for k, v in _mutable_values(order).items() if loaded[k] != v}
    if changed:  # an answered repeat (paying a paid order) costs no write
        await conn.execute(update(order_t).where(order_t.c.id == order_id).values(**changed))


class SqlOrders:
    """The ``Orders`` port on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Same pool; single statements on it commit by themselves (no BEGIN/COMMIT trips).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    def next_id(self) -> uuid.UUID:
        return uuid7()

    async def quote(
        self, user_id: uuid.UUID, idempotency_key: str, option_ids: Sequence[int]
    ) -> Quote:
        # One row per known option, or a single all-NULL row when none is known, always
        # carrying the earlier order's id (if any): one round trip either way.
        rows = await self._fetch(
            _QUOTE,
            user_id,
            idempotency_key,
            list(option_ids),
            reservation_key(user_id, idempotency_key),
        )
        prices = {
            int(row["id"]): OptionPrice(int(row["id"]), int(row["product_id"]), int(row["price"]))
            for row in rows
            if row["id"] is not None
        }
        return Quote(
            prices=prices,
            existing_order_id=rows[0]["existing"] if rows else None,
            abandoned=bool(rows) and rows[0]["claim"] == VOID,
            drop_of_option={
                int(row["id"]): int(row["drop_id"])
                for row in rows
                if row["id"] is not None and row["drop_id"] is not None
            },
        )

    async def abandon(self, reservation_key: str) -> bool:
        async with self._autocommit.connect() as conn:
            return await claim_void(conn, reservation_key)

    async def add(
        self,
        order: Order,
        *,
        stock_generation: str | None = None,
        open_order_cap: int | None = None,
    ) -> bool:
        """Write the order and its lines, or nothing; ``OptionWithdrawn`` if an option was
        deleted (with its product) since the quote."""
        try:
            if open_order_cap is not None and order.drop_id is not None:
                written = await self._add_capped(order, stock_generation, open_order_cap)
            else:
                written = await self._add(order, stock_generation)
        except Exception as exc:
            if sqlstate_of(exc) != FOREIGN_KEY_VIOLATION:
                raise
            withdrawn = await self._withdrawn(order)
            if withdrawn is None:
                # The other reference is the customer's account: a validly signed token
                # outlived it. Who is asking can no longer be established: 401.
                raise Unauthorized(
                    "the account no longer exists; sign up or log in again"
                ) from None
            raise withdrawn from None
        return bool(written)

    async def _add_capped(self, order: Order, stock_generation: str | None, cap: int) -> list[Any]:
        """The insert behind the customer's per-drop lock, if the cap leaves room."""
        async with self._autocommit.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            async with raw.transaction():
                await raw.execute(_DROP_BUYER_LOCK, f"drop-buyer:{order.drop_id}:{order.user_id}")
                if await raw.fetchval(_OPEN_IN_DROP, order.user_id, order.drop_id) >= cap:
                    raise OpenOrderLimitExceeded(cast("int", order.drop_id), cap)
                rows: list[Any] = await raw.fetch(_ADD, *self._add_args(order, stock_generation))
        return rows

    async def _add(self, order: Order, stock_generation: str | None) -> list[Any]:
        return await self._fetch(_ADD, *self._add_args(order, stock_generation))

    @staticmethod
    def _add_args(order: Order, stock_generation: str | None) -> tuple[Any, ...]:
        return (
            order.id,
            order.user_id,
            order.status.value,
            order.payment_method.value,
            order.pay_by,
            order.total,
            order.shipping_address,
            order.idempotency_key,
            order.reservation_key,
            order.request_fingerprint,
            order.created_at,
            [line.option_id for line in order.lines],
            [line.product_id for line in order.lines],
            [line.quantity for line in order.lines],
            [line.unit_price for line in order.lines],
            stock_generation,
            order.drop_id,
        )

    async def _withdrawn(self, order: Order) -> OptionWithdrawn | None:
        """Which line lost its option. The product delete that raced the write committed
        first (the foreign key check waited for it), so the option is gone for good; the
        statement wrote neither the order nor any line."""
        rows = await self._fetch(_STILL_LISTED, [line.option_id for line in order.lines])
        listed = {int(row["id"]) for row in rows}
        for line in order.lines:
            if line.option_id not in listed:
                return OptionWithdrawn(line.option_id, requested=line.quantity)
        return None

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        """Run one statement on a pooled connection's asyncpg driver, in autocommit."""
        async with self._autocommit.connect() as conn:
            raw = await conn.get_raw_connection()
            rows: list[Any] = await raw.driver_connection.fetch(sql, *args)  # type: ignore[union-attr]
        return rows

    async def get(self, order_id: uuid.UUID) -> Order | None:
        async with self._autocommit.connect() as conn:
            row = (await conn.execute(select(order_t).where(order_t.c.id == order_id))).first()
            if row is None:
                return None
            return (await _orders_with_lines(conn, [row]))[0]

    async def find(self, user_id: uuid.UUID, idempotency_key: str) -> Order | None:
        async with self._autocommit.connect() as conn:
            row = (
                await conn.execute(
                    select(order_t).where(
                        order_t.c.user_id == user_id,
                        order_t.c.idempotency_key == idempotency_key,
                    )
                )
            ).first()
            if row is None:
                return None
            return (await _orders_with_lines(conn, [row]))[0]

    async def page(self, user_id: uuid.UUID, *, limit: int, after: OrderCursor | None) -> OrderPage:
        stmt = select(order_t).where(
            order_t.c.user_id == user_id, order_t.c.status != OrderStatus.EXPIRED.value
        )
        if after is not None:
            # Strictly after the cursor: the boundary item is never repeated.
            stmt = stmt.where(
                tuple_(order_t.c.created_at, order_t.c.id)
                < tuple_(literal(after.created_at, order_t.c.created_at.type), after.order_id)
            )
        stmt = stmt.order_by(order_t.c.created_at.desc(), order_t.c.id.desc()).limit(limit + 1)
        async with self._autocommit.connect() as conn:
            rows = (await conn.execute(stmt)).all()
            items = await _orders_with_lines(conn, rows[:limit])
        last = items[-1] if len(rows) > limit else None
        cursor = None if last is None else OrderCursor(last.created_at, last.id)
        return OrderPage(items=tuple(items), next_cursor=cursor)

    @asynccontextmanager
    async def locked(self, order_id: uuid.UUID) -> AsyncIterator[Order]:
        async with self._engine.begin() as conn, locked_order(conn, order_id) as order:
            yield order

    async def mark_stock_released(self, order_id: uuid.UUID, at: datetime) -> None:
        async with self._autocommit.connect() as conn:
            await conn.execute(
                update(order_t)
                .where(order_t.c.id == order_id, order_t.c.stock_released_at.is_(None))
                .values(stock_released_at=at)
            )

    async def overdue(self, now: datetime, *, limit: int) -> Sequence[uuid.UUID]:
        async with self._autocommit.connect() as conn:
            rows = await conn.execute(
                select(order_t.c.id)
                .where(
                    order_t.c.status == OrderStatus.PENDING_PAYMENT.value,
                    order_t.c.pay_by <= now,
                )
                .order_by(order_t.c.pay_by)
                .limit(limit)
            )
            return [row.id for row in rows]

    async def awaiting_release(self, *, limit: int) -> Sequence[Order]:
        async with self._autocommit.connect() as conn:
            rows = (
                await conn.execute(
                    select(order_t)
                    .where(
                        order_t.c.stock_released_at.is_(None),
                        order_t.c.status.in_(OrderStatus.values(OrderStatus.CLOSED)),
                    )
                    .order_by(order_t.c.id)
                    .limit(limit)
                )
            ).all()
            return await _orders_with_lines(conn, rows)

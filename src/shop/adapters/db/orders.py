"""``SqlOrders``: the orders repository on PostgreSQL, in SQLAlchemy Core.

Core rather than the ORM: an order is written once and then changes a status and a timestamp,
so an identity map and unit-of-work flushes would only add work on the purchase hot path.
That path costs two statements here, each on an autocommit connection (no BEGIN/COMMIT round
trips): one read (catalog prices + an earlier order under the same idempotency key) and one
write (order and lines in a single ``WITH … INSERT``, atomic as any single statement is),
each shared by the purchases of this process that arrive together (group commit, see
``purchase_statements``).

Transitions lock the order row (``SELECT … FOR UPDATE``) for the length of the use case's
decision, so a payment racing the expiry sweep, or a cancel racing the shipment, is decided
one after the other on the committed state.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
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

from shop.adapters.coalescing import Coalescer
from shop.adapters.db.purchase_statements import (
    ADD,
    ADD_ORDERS,
    QUOTE,
    QUOTES,
    add_args,
    one_add_args,
    one_quote_args,
    quote_args,
    quote_of,
    quotes_from,
    written_of,
)
from shop.adapters.db.reservation_claims import claim_void
from shop.adapters.db.sqlstate import FOREIGN_KEY_VIOLATION, sqlstate_of
from shop.adapters.db.tables import OrderLineRow, OrderRow, sql_list
from shop.domain.errors import NotFound, OpenOrderLimitExceeded, OptionWithdrawn, Unauthorized
from shop.domain.orders.model import (
    Order,
    OrderCursor,
    OrderLine,
    OrderPage,
    OrderStatus,
    PaymentMethod,
    Quote,
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
    """The ``Orders`` port on PostgreSQL.

    The purchase path's quote and (uncapped) order insert are group-committed: the concurrent
    calls of this process wait while a batch is in flight and go together as the next one,
    one statement and one pool checkout per batch (``purchase_statements``). ``max_batch``
    and ``in_flight`` are the coalescers' (see ``Coalescer``).
    """

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 128, in_flight: int = 1) -> None:
        self._engine = engine
        # Same pool; single statements on it commit by themselves (no BEGIN/COMMIT trips).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._quotes: Coalescer[tuple[uuid.UUID, str, Sequence[int]], Quote] = Coalescer(
            self._quote_batch, max_batch=max_batch, in_flight=in_flight
        )
        self._adds: Coalescer[tuple[Order, str | None], bool] = Coalescer(
            self._add_batch, max_batch=max_batch, in_flight=in_flight
        )

    def next_id(self) -> uuid.UUID:
        return uuid7()

    async def quote(
        self, user_id: uuid.UUID, idempotency_key: str, option_ids: Sequence[int]
    ) -> Quote:
        return await self._quotes.submit((user_id, idempotency_key, list(option_ids)))

    async def _quote_batch(
        self, asks: list[tuple[uuid.UUID, str, Sequence[int]]]
    ) -> list[Quote | BaseException]:
        if len(asks) == 1:
            return [quote_of(await self._fetch(QUOTE, *one_quote_args(*asks[0])))]
        rows = await self._fetch(QUOTES, *quote_args(asks))
        return list(quotes_from(rows, len(asks)))

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
        deleted (with its product) since the quote. ``True`` once the order is committed."""
        if open_order_cap is not None and order.drop_id is not None:
            return await self._written(
                order, self._add_capped(order, stock_generation, open_order_cap)
            )
        return await self._adds.submit((order, stock_generation))

    async def _add_batch(self, items: list[tuple[Order, str | None]]) -> list[bool | BaseException]:
        """One statement, one commit for the batch. A foreign key violation (an option
        withdrawn, an account deleted) is one order's but aborts them all: then each order
        goes again on its own, so each caller gets its own outcome. Any other error is every
        caller's: one statement committed all of their orders or none (even when only its
        answer was lost), and the use case's release claims each key void before giving its
        units back, so it frees only those of orders that were not written."""
        if len(items) == 1:
            return [await self._add_one(*items[0])]
        try:
            written = written_of(await self._fetch(ADD_ORDERS, *add_args(items)))
        except Exception as exc:
            if sqlstate_of(exc) != FOREIGN_KEY_VIOLATION:
                raise
            return [await self._add_one(order, generation) for order, generation in items]
        return [order.id in written for order, _ in items]

    async def _add_one(self, order: Order, generation: str | None) -> bool | BaseException:
        try:
            return await self._written(order, self._fetch(ADD, *one_add_args(order, generation)))
        except Exception as exc:
            return exc

    async def _written(self, order: Order, write: Awaitable[list[Any]]) -> bool:
        """Whether ``write`` wrote ``order``, or why it could not."""
        try:
            rows = await write
        except Exception as exc:
            if sqlstate_of(exc) != FOREIGN_KEY_VIOLATION:
                raise
            raise await self._refusal(order) from None
        return bool(rows)

    async def _add_capped(self, order: Order, stock_generation: str | None, cap: int) -> list[Any]:
        """The insert behind the customer's per-drop lock, if the cap leaves room."""
        async with self._autocommit.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            async with raw.transaction():
                await raw.execute(_DROP_BUYER_LOCK, f"drop-buyer:{order.drop_id}:{order.user_id}")
                if await raw.fetchval(_OPEN_IN_DROP, order.user_id, order.drop_id) >= cap:
                    raise OpenOrderLimitExceeded(cast("int", order.drop_id), cap)
                rows: list[Any] = await raw.fetch(ADD, *one_add_args(order, stock_generation))
        return rows

    async def _refusal(self, order: Order) -> OptionWithdrawn | Unauthorized:
        """Why the insert of ``order`` broke a foreign key. The product delete that raced the
        write committed first (the foreign key check waited for it), so the option is gone
        for good; the statement wrote neither the order nor any line. With every option
        still listed, the other reference is the customer's account: a validly signed token
        outlived it, and who is asking can no longer be established (401)."""
        rows = await self._fetch(_STILL_LISTED, [line.option_id for line in order.lines])
        listed = {int(row["id"]) for row in rows}
        for line in order.lines:
            if line.option_id not in listed:
                return OptionWithdrawn(line.option_id, requested=line.quantity)
        return Unauthorized("the account no longer exists; sign up or log in again")

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

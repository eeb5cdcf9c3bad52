"""``SqlDrops``: the drops repository on PostgreSQL, in SQLAlchemy Core.

Which drop an option sells in is ``option.drop_id``: the purchase's quote reads it in the
round trip it already makes. Claiming options for a drop runs under one advisory lock
(``DROP_OPTIONS_LOCK``) with the options' rows locked, so two admins creating drops at once
cannot both claim an option; an option whose drop has ended may join a new drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.adapters.db.tables import DropRow, OptionRow, OrderLineRow, OrderRow
from shop.domain.drops.model import Drop, DropRules, QueueSettings
from shop.domain.errors import Conflict, NotFound
from shop.domain.orders.model import OrderStatus, PaymentMethod

drop_t = cast("Table", DropRow.__table__)
option_t = cast("Table", OptionRow.__table__)
order_t = cast("Table", OrderRow.__table__)
line_t = cast("Table", OrderLineRow.__table__)

# Transaction-scoped advisory lock serialising every claim of options by drops.
DROP_OPTIONS_LOCK = 7_210_014


def _to_drop(row: Row[Any]) -> Drop:
    return Drop(
        id=int(row.id),
        rules=DropRules(
            name=row.name,
            option_ids=tuple(int(o) for o in row.option_ids),
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            per_buyer_limit=row.per_buyer_limit,
            max_open_orders_per_buyer=row.max_open_orders_per_buyer,
            payment_methods=frozenset(PaymentMethod(m) for m in row.payment_methods),
            payment_window=timedelta(seconds=row.payment_window_seconds),
            queue=QueueSettings(
                enabled=row.queue_enabled,
                admit_per_second=row.admit_per_second,
                admission_ttl=timedelta(seconds=row.admission_ttl_seconds),
                pre_queue=timedelta(seconds=row.pre_queue_seconds),
            ),
        ),
        created_at=row.created_at,
    )


def _values(rules: DropRules) -> dict[str, Any]:
    return {
        "name": rules.name,
        "option_ids": list(rules.option_ids),
        "starts_at": rules.starts_at,
        "ends_at": rules.ends_at,
        "per_buyer_limit": rules.per_buyer_limit,
        "max_open_orders_per_buyer": rules.max_open_orders_per_buyer,
        "payment_methods": sorted(m.value for m in rules.payment_methods),
        "payment_window_seconds": round(rules.payment_window.total_seconds()),
        "queue_enabled": rules.queue.enabled,
        "admit_per_second": rules.queue.admit_per_second,
        "admission_ttl_seconds": round(rules.queue.admission_ttl.total_seconds()),
        "pre_queue_seconds": round(rules.queue.pre_queue.total_seconds()),
    }


class SqlDrops:
    """The ``Drops`` port on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, rules: DropRules, *, now: datetime) -> Drop:
        async with self._engine.begin() as conn:
            next_id = int(await conn.scalar(select(func.nextval("sale_drop_id_seq"))) or 0)
            drop = Drop.announce(rules, drop_id=next_id, now=now)
            await self._lock_options(conn, drop, now)
            await conn.execute(
                drop_t.insert().values(id=drop.id, created_at=now, **_values(drop.rules))
            )
            await self._claim(conn, drop)
        return drop

    async def save(self, drop: Drop, *, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await self._lock_options(conn, drop, now)
            await conn.execute(
                update(drop_t).where(drop_t.c.id == drop.id).values(**_values(drop.rules))
            )
            # Options the drop no longer lists sell outside drops again.
            await conn.execute(
                update(option_t)
                .where(
                    option_t.c.drop_id == drop.id,
                    option_t.c.id.not_in(list(drop.rules.option_ids)),
                )
                .values(drop_id=None)
            )
            await self._claim(conn, drop)

    async def _lock_options(self, conn: AsyncConnection, drop: Drop, now: datetime) -> None:
        """Refuse unknown options and options of another drop not ended (nothing written)."""
        await conn.execute(select(func.pg_advisory_xact_lock(bindparam("key", DROP_OPTIONS_LOCK))))
        ids = list(drop.rules.option_ids)
        rows = (
            await conn.execute(
                select(option_t.c.id, option_t.c.drop_id, drop_t.c.ends_at)
                .select_from(option_t.outerjoin(drop_t, drop_t.c.id == option_t.c.drop_id))
                .where(option_t.c.id.in_(ids))
                .with_for_update(of=option_t)
            )
        ).all()
        found = {int(row.id) for row in rows}
        unknown = [o for o in ids if o not in found]
        if unknown:
            raise NotFound(
                f"option {unknown[0]} does not exist",
                extra={"field": "option_ids", "unknown": unknown},
            )
        taken = sorted(
            (int(row.id), int(row.drop_id))
            for row in rows
            if row.drop_id is not None
            and row.drop_id != drop.id
            and (row.ends_at is None or row.ends_at > now)
        )
        if taken:
            raise Conflict(
                f"option {taken[0][0]} is already in drop {taken[0][1]}",
                extra={
                    "field": "option_ids",
                    "option_ids": [o for o, _ in taken],
                    "drop_id": taken[0][1],
                },
            )

    @staticmethod
    async def _claim(conn: AsyncConnection, drop: Drop) -> None:
        await conn.execute(
            update(option_t)
            .where(option_t.c.id.in_(list(drop.rules.option_ids)))
            .values(drop_id=drop.id)
        )

    async def get(self, drop_id: int) -> Drop | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(drop_t).where(drop_t.c.id == drop_id))).first()
        return None if row is None else _to_drop(row)

    async def current(self, now: datetime, *, limit: int) -> Sequence[Drop]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(drop_t)
                    .where(or_(drop_t.c.ends_at.is_(None), drop_t.c.ends_at > now))
                    .order_by(drop_t.c.starts_at, drop_t.c.id)
                    .limit(limit)
                )
            ).all()
        return [_to_drop(row) for row in rows]

    async def sales(self, drop: Drop) -> tuple[int, int]:
        unpaid = OrderStatus.values(OrderStatus.UNPAID)
        live = OrderStatus.values(OrderStatus.LIVE)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT coalesce(sum(l.quantity) FILTER "
                        "(WHERE o.status <> ALL(CAST(:unpaid AS varchar[]))), 0) AS sold, "
                        "coalesce(sum(l.quantity) FILTER "
                        "(WHERE o.status = ANY(CAST(:unpaid AS varchar[]))), 0) AS held "
                        "FROM purchase_order o JOIN order_line l ON l.order_id = o.id "
                        "WHERE o.drop_id = :drop_id AND o.status = ANY(CAST(:live AS varchar[]))"
                    ),
                    {"drop_id": drop.id, "unpaid": unpaid, "live": live},
                )
            ).one()
        return int(row.sold), int(row.held)

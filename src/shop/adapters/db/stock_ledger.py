"""The stock ledger: what PostgreSQL says was put on sale and sold, whatever strategy sells.

Conservation: for each option, once reservations settle,
``stock_total = remaining + Σ quantity of the lines of live orders``. ``stock_total`` only
grows (``put_on_sale``); order lines are written by the orders module and become unsold when
their order is cancelled or expired. These queries are the ground truth every store is checked
against (``shop stock status|reconcile``), rebuilt from (counter recovery), and that the race
tests assert on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.adapters.db.reservation_claims import claim_void
from shop.adapters.db.tables import OptionRow, OrderLineRow, OrderRow
from shop.domain.orders.status import OrderStatus
from shop.domain.stock.ledger import balances, expected_left
from shop.domain.stock.model import HeldReservation, Line, ReservationStatus, merge_lines

option = cast("Table", OptionRow.__table__)
order = cast("Table", OrderRow.__table__)
order_line = cast("Table", OrderLineRow.__table__)

_BATCH = 1000


@dataclass(frozen=True, slots=True)
class OptionLedger:
    """One option in the ledger. ``stock`` is the ``option.stock`` column as it is now."""

    option_id: int
    stock_total: int
    stock: int
    sold: int

    @property
    def unsold(self) -> int:
        """What should be left once every reservation has settled."""
        return expected_left(self.stock_total, sold=self.sold)

    def balances(self, remaining: int) -> bool:
        """Conservation holds with ``remaining`` units left on sale."""
        return balances(self.stock_total, sold=self.sold, left=remaining)


@asynccontextmanager
async def ledger_snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Several ledger queries seeing one moment: a REPEATABLE READ transaction.

    Reading the total, the sold lines and the reservations in separate READ COMMITTED
    statements could count an order committing in between twice or not at all.
    """
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn


def _sold_per_option() -> object:
    return (
        select(order_line.c.option_id, func.sum(order_line.c.quantity).label("sold"))
        .join(order, order.c.id == order_line.c.order_id)
        .where(order.c.status.in_(OrderStatus.values(OrderStatus.LIVE)))
        .group_by(order_line.c.option_id)
        .subquery("sold")
    )


async def option_ledger(
    conn: AsyncConnection, option_ids: Sequence[int] | None = None
) -> dict[int, OptionLedger]:
    """Every option (or the ones named) with its total, its stock column and its sold units."""
    sold = cast("Table", _sold_per_option())
    query = select(
        option.c.id,
        option.c.stock_total,
        option.c.stock,
        func.coalesce(sold.c.sold, 0).label("sold"),
    ).outerjoin(sold, sold.c.option_id == option.c.id)
    if option_ids is not None:
        query = query.where(option.c.id.in_(list(option_ids)))
    rows = await conn.execute(query.order_by(option.c.id))
    return {
        int(row.id): OptionLedger(
            option_id=int(row.id),
            stock_total=int(row.stock_total),
            stock=int(row.stock),
            sold=int(row.sold),
        )
        for row in rows
    }


async def ledger(
    engine: AsyncEngine, option_ids: Sequence[int] | None = None
) -> dict[int, OptionLedger]:
    """``option_ledger`` on a connection of its own (for tests and read-only callers)."""
    async with engine.connect() as conn:
        return await option_ledger(conn, option_ids)


async def order_states(conn: AsyncConnection, keys: Sequence[str]) -> dict[str, str]:
    """Order status per reservation key; keys without an order are absent."""
    states: dict[str, str] = {}
    for start in range(0, len(keys), _BATCH):
        rows = await conn.execute(
            select(order.c.reservation_key, order.c.status).where(
                order.c.reservation_key.in_(list(keys[start : start + _BATCH]))
            )
        )
        states.update({row.reservation_key: row.status for row in rows})
    return states


async def releasable_orders(conn: AsyncConnection) -> list[HeldReservation]:
    """Orders that may still give their units back, as the reservations that hold them.

    The counter recovery re-creates these (confirmed) so that a later cancel finds them.
    ``buyer`` is the order's owner, the identity callers pass to ``reserve``.
    """
    rows = await conn.execute(
        select(
            order.c.reservation_key,
            order.c.user_id,
            order.c.created_at,
            order_line.c.option_id,
            order_line.c.quantity,
        )
        .join(order_line, order_line.c.order_id == order.c.id)
        .where(order.c.status.in_(OrderStatus.values(OrderStatus.RELEASABLE)))
    )
    lines: dict[str, list[Line]] = defaultdict(list)
    meta: dict[str, tuple[str, float]] = {}
    for row in rows:
        lines[row.reservation_key].append(Line(int(row.option_id), int(row.quantity)))
        meta[row.reservation_key] = (str(row.user_id), row.created_at.timestamp())
    return [
        HeldReservation(
            key=key,
            lines=merge_lines(key_lines),
            status=ReservationStatus.CONFIRMED,
            buyer=meta[key][0],
            created_at=meta[key][1],
        )
        for key, key_lines in lines.items()
    ]


async def buyer_units(conn: AsyncConnection) -> dict[tuple[int, str], int]:
    """Units of each option each customer holds through live orders (per-buyer tallies)."""
    rows = await conn.execute(
        select(
            order_line.c.option_id,
            order.c.user_id,
            func.sum(order_line.c.quantity).label("units"),
        )
        .join(order, order.c.id == order_line.c.order_id)
        .where(order.c.status.in_(OrderStatus.values(OrderStatus.LIVE)))
        .group_by(order_line.c.option_id, order.c.user_id)
    )
    return {(int(row.option_id), str(row.user_id)): int(row.units) for row in rows}


async def sold_outside(conn: AsyncConnection, option_id: int, keys: Sequence[str]) -> int:
    """Units of ``option_id`` in live orders whose reservation is not among ``keys``."""
    query = (
        select(func.coalesce(func.sum(order_line.c.quantity), 0))
        .join(order, order.c.id == order_line.c.order_id)
        .where(
            order_line.c.option_id == option_id,
            order.c.status.in_(OrderStatus.values(OrderStatus.LIVE)),
        )
    )
    if keys:
        query = query.where(order.c.reservation_key.not_in(list(keys)))
    return int((await conn.execute(query)).scalar_one())


def held_outside_orders(
    held: Sequence[HeldReservation], states: Mapping[str, str]
) -> dict[int, int]:
    """Units per option held by reservations no live order accounts for (yet)."""
    units: dict[int, int] = defaultdict(int)
    for reservation in held:
        if states.get(reservation.key) in OrderStatus.LIVE:
            continue
        for line in reservation.lines:
            units[line.option_id] += line.quantity
    return dict(units)


class SqlOrderStates:
    """``OrderStates`` on the orders table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def states_of(self, keys: Sequence[str]) -> Mapping[str, str]:
        if not keys:
            return {}
        async with self._engine.connect() as conn:
            return await order_states(conn, keys)

    async def abandon(self, key: str) -> bool:
        async with self._engine.begin() as conn:
            return await claim_void(conn, key)

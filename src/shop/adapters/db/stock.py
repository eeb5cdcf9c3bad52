"""The ``db`` stock strategy: PostgreSQL alone decides who gets the last unit.

A conditional ``UPDATE option SET stock = stock - n WHERE id = :id AND stock >= n`` per line,
in option-id order, inside one transaction that also records the reservation. The row lock
taken by the UPDATE serialises buyers of one option; the ``stock >= n`` predicate is
re-checked on the locked row (READ COMMITTED re-evaluates it after waiting), so no schedule of
concurrent buyers can take more than there is. Lines in id order mean two multi-line orders
lock rows in the same order and cannot deadlock. The reservation row (primary key = the
idempotency key) makes a retried reserve return the first result instead of taking units
twice, and lets the sweep find reservations whose order was never written.

This is the baseline a user without Redis picks, and the fencing guard the Redlock strategy
relies on (it runs the same statements under its lock).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from sqlalchemy import Integer, Table, func, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.adapters.db.tables import OptionRow, StockReservationRow
from shop.domain.errors import NotFound, PurchaseLimitExceeded, ReservationLost, SoldOut
from shop.domain.stock.model import Line, Reservation, merge_lines

option = cast("Table", OptionRow.__table__)
reservation = cast("Table", StockReservationRow.__table__)
# Reservation states that hold units (a released one gave them back).
HELD = ("pending", "confirmed")


def lines_to_json(lines: Sequence[Line]) -> dict[str, int]:
    return {str(line.option_id): line.quantity for line in lines}


def lines_from_json(raw: Mapping[str, int]) -> tuple[Line, ...]:
    return merge_lines(Line(int(option_id), int(qty)) for option_id, qty in raw.items())


async def take_units(conn: AsyncConnection, lines: Sequence[Line]) -> None:
    """Decrement every line or raise ``SoldOut`` (the caller's transaction then rolls back)."""
    for line in lines:
        taken = await conn.execute(
            update(option)
            .where(option.c.id == line.option_id, option.c.stock >= line.quantity)
            .values(stock=option.c.stock - line.quantity)
            .returning(option.c.id)
        )
        if taken.first() is None:
            raise SoldOut(line.option_id, requested=line.quantity)


async def return_units(conn: AsyncConnection, lines: Sequence[Line]) -> None:
    for line in lines:
        await conn.execute(
            update(option)
            .where(option.c.id == line.option_id)
            .values(stock=option.c.stock + line.quantity)
        )


async def record_reservation(
    conn: AsyncConnection, key: str, lines: Sequence[Line], *, buyer: str | None = None
) -> Reservation | None:
    """Insert the reservation row; if the key exists, return the reservation it holds."""
    inserted = await conn.execute(
        insert(reservation)
        .values(key=key, lines=lines_to_json(lines), buyer=buyer)
        .on_conflict_do_nothing(index_elements=[reservation.c.key])
        .returning(reservation.c.key)
    )
    if inserted.first() is not None:
        return None
    existing = (
        await conn.execute(select(reservation.c.lines).where(reservation.c.key == key))
    ).scalar_one()
    return Reservation(key=key, lines=lines_from_json(existing))


async def check_buyer_limit(
    conn: AsyncConnection, buyer: str, lines: Sequence[Line], limit: int
) -> None:
    """Refuse when the buyer would hold more than ``limit`` units of an option.

    Runs after ``take_units`` in the same transaction: every reservation of these options
    holds the option rows' locks until it commits, and under READ COMMITTED this statement's
    snapshot is taken after our locks were granted, so it sees every earlier reservation of
    the buyer (and this one). Two concurrent requests of one buyer cannot both pass.
    """
    held = (
        func.jsonb_each_text(reservation.c.lines)
        .table_valued("key", "value")
        .render_derived(name="held")
    )
    rows = await conn.execute(
        select(held.c.key, func.sum(held.c.value.cast(Integer)))
        .select_from(reservation.join(held, true()))
        .where(
            reservation.c.buyer == buyer,
            reservation.c.status.in_(HELD),
            held.c.key.in_([str(line.option_id) for line in lines]),
        )
        .group_by(held.c.key)
    )
    over = sorted(int(option_id) for option_id, units in rows if units > limit)
    if over:
        raise PurchaseLimitExceeded(over[0], limit=limit)


async def settle(
    conn: AsyncConnection, key: str, *, to: str, from_: Sequence[str]
) -> Reservation | None:
    """Move a reservation between states once; returns it only if this call moved it."""
    moved = await conn.execute(
        update(reservation)
        .where(reservation.c.key == key, reservation.c.status.in_(from_))
        .values(status=to, settled_at=func.now())
        .returning(reservation.c.lines)
    )
    row = moved.first()
    return None if row is None else Reservation(key=key, lines=lines_from_json(row[0]))


class PostgresStock:
    """``SHOP_STOCK_STRATEGY=db``: conditional UPDATEs in PostgreSQL, no Redis involved."""

    name = "db"

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: int | None = None,
    ) -> Reservation:
        merged = merge_lines(lines)
        async with self._engine.begin() as conn:
            existing = await record_reservation(conn, key, merged, buyer=buyer)
            if existing is not None:
                return existing
            await take_units(conn, merged)
            if buyer is not None and per_buyer_limit is not None:
                await check_buyer_limit(conn, buyer, merged, per_buyer_limit)
        return Reservation(key=key, lines=merged)

    async def confirm(self, key: str) -> None:
        async with self._engine.begin() as conn:
            if await settle(conn, key, to="confirmed", from_=("pending",)) is None:
                await ensure_confirmed(conn, key)

    async def release(self, key: str) -> None:
        async with self._engine.begin() as conn:
            released = await settle(conn, key, to="released", from_=("pending", "confirmed"))
            if released is not None:
                await return_units(conn, released.lines)

    async def put_on_sale(self, option_id: int, units: int) -> None:
        if units < 1:
            raise ValueError("put_on_sale needs a positive number of units")
        async with self._engine.begin() as conn:
            await add_to_total(conn, option_id, units)

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(option.c.id, option.c.stock).where(option.c.id.in_(list(option_ids)))
            )
            found = {int(row.id): int(row.stock) for row in rows}
        return {option_id: found.get(option_id, 0) for option_id in option_ids}


async def ensure_confirmed(conn: AsyncConnection, key: str) -> None:
    """A repeated confirm is fine; confirming a released or unknown reservation is not."""
    status = (
        await conn.execute(select(reservation.c.status).where(reservation.c.key == key))
    ).scalar_one_or_none()
    if status != "confirmed":
        raise ReservationLost(key)


async def add_to_total(conn: AsyncConnection, option_id: int, units: int) -> None:
    """Raise both the lifetime total and what is left: the ledger stays balanced."""
    updated = await conn.execute(
        update(option)
        .where(option.c.id == option_id)
        .values(stock_total=option.c.stock_total + units, stock=option.c.stock + units)
        .returning(option.c.id)
    )
    if updated.first() is None:
        raise NotFound(f"option {option_id} does not exist")

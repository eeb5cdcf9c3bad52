"""The SQL statements of the PostgreSQL-backed stock strategies (``db`` and ``redlock``).

Each function runs inside the caller's transaction; the caller decides where it commits and
what lock it holds meanwhile. See ``stock.py`` for why these statements keep the stock right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shop.adapters.db.tables import OptionRow, StockBuyerTallyRow, StockReservationRow
from shop.domain.errors import InvalidInput, NotFound, PurchaseLimitExceeded, SoldOut
from shop.domain.stock.model import HeldReservation, Line, Reservation, merge_lines

option = cast("Table", OptionRow.__table__)
reservation = cast("Table", StockReservationRow.__table__)
tally = cast("Table", StockBuyerTallyRow.__table__)

OPEN_STATUSES = ("pending", "confirmed")
# A key whose reservation gave its units back (or now lives in Redis) may reserve again.
REUSABLE_STATUSES = ("released", "moved")


def lines_to_json(lines: Sequence[Line]) -> dict[str, int]:
    return {str(line.option_id): line.quantity for line in lines}


def lines_from_json(raw: Mapping[str, int]) -> tuple[Line, ...]:
    return merge_lines(Line(int(option_id), int(qty)) for option_id, qty in raw.items())


def check_limit_arguments(buyer: str | None, per_buyer_limit: int | None) -> None:
    if per_buyer_limit is not None and (buyer is None or per_buyer_limit < 1):
        raise InvalidInput("a per-buyer limit needs a buyer and a limit of at least 1")


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


async def refuse_if_short(conn: AsyncConnection, lines: Sequence[Line]) -> None:
    """Raise ``SoldOut`` now if a line cannot fit, without any lock.

    A read may be stale only in the direction of units coming back (a release just
    committed), so it can refuse a buyer who would have fit a moment later, never let one
    through: the conditional UPDATE still decides.
    """
    rows = await conn.execute(
        select(option.c.id, option.c.stock).where(
            option.c.id.in_([line.option_id for line in lines])
        )
    )
    left = {int(row.id): int(row.stock) for row in rows}
    for line in lines:
        if left.get(line.option_id, 0) < line.quantity:
            raise SoldOut(line.option_id, requested=line.quantity)


async def return_units(conn: AsyncConnection, lines: Sequence[Line]) -> None:
    for line in lines:
        await conn.execute(
            update(option)
            .where(option.c.id == line.option_id)
            .values(stock=option.c.stock + line.quantity)
        )


async def record_reservation(
    conn: AsyncConnection, key: str, lines: Sequence[Line], buyer: str | None = None
) -> Reservation | None:
    """Record the reservation; ``None`` means this call owns it and must take the units.

    If the key already holds units, return that reservation (a retry takes nothing more). A
    key whose reservation was released is taken over again. ``ON CONFLICT DO UPDATE`` locks
    the existing row even when its WHERE is false, so of two concurrent retries exactly one
    takes over; the other then reads the row the winner committed.
    """
    statement = insert(reservation).values(key=key, lines=lines_to_json(lines), buyer=buyer)
    recorded = await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[reservation.c.key],
            set_={
                "lines": statement.excluded.lines,
                "buyer": statement.excluded.buyer,
                "status": "pending",
                "created_at": func.now(),
                "settled_at": None,
            },
            where=reservation.c.status.in_(REUSABLE_STATUSES),
        ).returning(reservation.c.key)
    )
    if recorded.first() is not None:
        return None
    existing = (
        await conn.execute(select(reservation.c.lines).where(reservation.c.key == key))
    ).scalar_one()
    return Reservation(key=key, lines=lines_from_json(existing))


async def settle(
    conn: AsyncConnection, key: str, *, to: str, from_: Sequence[str]
) -> HeldReservation | None:
    """Move a reservation between states once; returns it only if this call moved it."""
    moved = await conn.execute(
        update(reservation)
        .where(reservation.c.key == key, reservation.c.status.in_(from_))
        .values(status=to, settled_at=func.now())
        .returning(reservation.c.lines, reservation.c.buyer, reservation.c.created_at)
    )
    row = moved.first()
    if row is None:
        return None
    return HeldReservation(
        key=key,
        lines=lines_from_json(row.lines),
        status=to,
        buyer=row.buyer,
        created_at=row.created_at.timestamp(),
    )


async def count_for_buyer(
    conn: AsyncConnection, buyer: str, lines: Sequence[Line], limit: int | None
) -> None:
    """Add the lines to the buyer's tallies, or raise ``PurchaseLimitExceeded``.

    The upsert locks the (option, buyer) row until commit, so concurrent requests of one
    buyer queue here and each sees the total the previous one committed.
    """
    for line in lines:
        params: dict[str, Any] = {
            "option_id": line.option_id,
            "buyer": buyer,
            "units": line.quantity,
        }
        if limit is None:
            counted = await conn.execute(_COUNT_UNLIMITED, params)
        else:
            counted = await conn.execute(_COUNT_LIMITED, {**params, "limit": limit})
        if counted.first() is None:
            raise PurchaseLimitExceeded(line.option_id, cast("int", limit))


_COUNT_UNLIMITED = text(
    "INSERT INTO stock_buyer_tally (option_id, buyer, units) "
    "VALUES (:option_id, :buyer, :units) "
    "ON CONFLICT (option_id, buyer) DO UPDATE "
    "SET units = stock_buyer_tally.units + EXCLUDED.units RETURNING units"
)
_COUNT_LIMITED = text(
    "INSERT INTO stock_buyer_tally (option_id, buyer, units) "
    "SELECT CAST(:option_id AS bigint), CAST(:buyer AS varchar), CAST(:units AS integer) "
    "WHERE CAST(:units AS integer) <= CAST(:limit AS integer) "
    "ON CONFLICT (option_id, buyer) DO UPDATE "
    "SET units = stock_buyer_tally.units + EXCLUDED.units "
    "WHERE stock_buyer_tally.units + EXCLUDED.units <= CAST(:limit AS integer) RETURNING units"
)


async def uncount_for_buyer(conn: AsyncConnection, buyer: str, lines: Sequence[Line]) -> None:
    for line in lines:
        await conn.execute(
            update(tally)
            .where(tally.c.option_id == line.option_id, tally.c.buyer == buyer)
            .values(units=func.greatest(tally.c.units - line.quantity, 0))
        )


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


async def db_stock(conn: AsyncConnection, option_ids: Sequence[int]) -> dict[int, int]:
    rows = await conn.execute(
        select(option.c.id, option.c.stock).where(option.c.id.in_(list(option_ids)))
    )
    found = {int(row.id): int(row.stock) for row in rows}
    return {option_id: found.get(option_id, 0) for option_id in option_ids}


async def open_reservations(conn: AsyncConnection) -> list[HeldReservation]:
    rows = await conn.execute(
        select(
            reservation.c.key,
            reservation.c.lines,
            reservation.c.status,
            reservation.c.buyer,
            reservation.c.created_at,
        ).where(reservation.c.status.in_(OPEN_STATUSES))
    )
    return [
        HeldReservation(
            key=row.key,
            lines=lines_from_json(row.lines),
            status=row.status,
            buyer=row.buyer,
            created_at=row.created_at.timestamp(),
        )
        for row in rows
    ]


async def retire_reservations(conn: AsyncConnection, keys: Sequence[str]) -> None:
    await conn.execute(
        update(reservation)
        .where(reservation.c.key.in_(list(keys)), reservation.c.status == "confirmed")
        .values(status="sold", settled_at=func.now())
    )


async def release_in(conn: AsyncConnection, key: str) -> None:
    """Give a reservation's units (and its buyer's allowance) back, once.

    Row locks are taken in the order ``reserve`` takes them — the buyer's tally rows, then
    the option rows — so a release and a reservation of the same buyer cannot deadlock.
    """
    released = await settle(conn, key, to="released", from_=OPEN_STATUSES)
    if released is not None:
        if released.buyer is not None:
            await uncount_for_buyer(conn, released.buyer, released.lines)
        await return_units(conn, released.lines)


def check_units(units: Any) -> None:
    if not isinstance(units, int) or units < 1:
        raise InvalidInput("put_on_sale needs a positive number of units")

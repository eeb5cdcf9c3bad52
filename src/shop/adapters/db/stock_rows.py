"""The SQL statements of the PostgreSQL-backed stock strategies (``db`` and ``redlock``).

Each function runs inside the caller's transaction; the caller decides where it commits and
what lock it holds meanwhile. See ``stock.py`` for why these statements keep the stock right.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.adapters.db.stock_fence import FENCE_SQL, STRATEGY_SETTING, StrategyMoved, fence_sql
from shop.adapters.db.tables import OptionRow, StockBuyerTallyRow, StockReservationRow, sql_list
from shop.domain.errors import (
    NotFound,
    ReservationLost,
)
from shop.domain.stock.model import (
    HeldReservation,
    Line,
    ReservationStatus,
    merge_lines,
)

# The asyncpg connection under a pooled SQLAlchemy one (asyncpg ships no type stubs).
Raw = Any

option = cast("Table", OptionRow.__table__)
reservation = cast("Table", StockReservationRow.__table__)
tally = cast("Table", StockBuyerTallyRow.__table__)

OPEN_STATUSES = ReservationStatus.values(ReservationStatus.OPEN)
_PENDING = ReservationStatus.PENDING.value


def lines_to_json(lines: Sequence[Line]) -> dict[str, int]:
    return {str(line.option_id): line.quantity for line in lines}


def lines_from_json(raw: Mapping[str, int]) -> tuple[Line, ...]:
    return merge_lines(Line(int(option_id), int(qty)) for option_id, qty in raw.items())


# Every hot statement is built once: building SQLAlchemy constructs per call costs more CPU
# than the database spends running them. The switch fence (shared lock + active-strategy
# check) is folded into each operation's first write (see stock_fence).
#
# The purchase path's statements (reserve and confirm) run on the pooled connection's asyncpg
# driver directly, as the orders repository's do: SQLAlchemy's cursor layer around asyncpg
# cost more CPU than the statements (``benchmarks.purchase_profile``: it was most of why
# ``db`` and ``redlock`` used about twice the counter's CPU per purchase). Each is one
# statement committing on its own (``raw_connection``).
_ACTIVE_NOW = text(f"SELECT value FROM app_setting WHERE name = '{STRATEGY_SETTING}'")
_RAW_ACTIVE_NOW = f"SELECT value FROM app_setting WHERE name = '{STRATEGY_SETTING}'"
_RETURN = text("UPDATE option SET stock = stock + :qty WHERE id = :id")
_LEFT = "SELECT id, stock FROM option WHERE id = ANY($1::bigint[])"
# The reservation and its confirmation commit without waiting for their WAL to reach the
# disk (``synchronous_commit`` off for their transaction only; the setting is folded into
# the statement that writes, so it costs no round trip). No guarantee rests on these commits
# being durable on their own:
# - a reservation lost in a PostgreSQL crash is lost with the units it took and its buyer's
#   tally (one transaction), and no order can refer to it: the order insert commits
#   synchronously later, and a synchronous commit flushes every WAL record before its own;
# - a confirmation lost in a crash leaves a pending reservation whose key an order claims,
#   which the stock sweep confirms (``sweep_reservations``).
# What it saves is one disk flush per purchase for each (two for ``db`` and ``redlock``), and
# for ``redlock`` the flush inside the lock, which a hot option waits on in turn.
ASYNC_COMMIT_SQL = "set_config('synchronous_commit', 'off', true) = 'off'"
_CONFIRM = (
    f"UPDATE stock_reservation SET status = '{ReservationStatus.CONFIRMED.value}', "
    f"settled_at = now() WHERE key = $1 AND status = '{_PENDING}' AND {fence_sql('$2')} "
    f"AND {ASYNC_COMMIT_SQL} RETURNING key"
)
# ``_CONFIRM`` for the concurrent confirmations of a batch (``PostgresStock.confirm``): the same
# conditions, row by row, in one statement and one commit (no flush either).
_CONFIRM_ALL = (
    f"UPDATE stock_reservation SET status = '{ReservationStatus.CONFIRMED.value}', "
    f"settled_at = now() WHERE key = ANY($1::varchar[]) AND status = '{_PENDING}' "
    f"AND {fence_sql('$2')} AND {ASYNC_COMMIT_SQL} RETURNING key"
)
_RAW_STATUS = "SELECT status FROM stock_reservation WHERE key = $1"
_RELEASE = text(
    f"UPDATE stock_reservation SET status = '{ReservationStatus.RELEASED.value}', "
    f"settled_at = now() WHERE key = :key AND status IN ({sql_list(OPEN_STATUSES)}) "
    f"AND {FENCE_SQL} "
    "RETURNING lines, buyer, created_at"
)


@asynccontextmanager
async def raw_connection(autocommit: AsyncEngine) -> AsyncIterator[Raw]:
    """A pooled connection's asyncpg driver, each statement committing on its own."""
    async with autocommit.connect() as conn:
        yield (await conn.get_raw_connection()).driver_connection


def json_value(value: Any) -> Any:
    """A jsonb column or result as Python: asyncpg hands jsonb over as text unless a codec
    is set on the connection, SQLAlchemy decodes it."""
    return json.loads(value) if isinstance(value, str | bytes) else value


async def ensure_active(conn: AsyncConnection, strategy: str) -> None:
    """``StrategyMoved`` unless ``strategy`` is the active one.

    Called when a statement with the folded fence matched no row: either there was nothing
    to do, or the fence said no. A switch that moved the row made it unmatched too, and had
    committed by the time our statement could lock the row, so this later read sees it.
    """
    active = (await conn.execute(_ACTIVE_NOW)).scalar()
    if active != strategy:
        raise StrategyMoved(f"stock strategy is {active!r}, not {strategy!r}")


async def fits(raw: Raw, lines: Sequence[Line]) -> bool:
    """Whether every line fits in what is left, read without any lock.

    A read may be stale only in the direction of units coming back (a release just
    committed), so it can say no to a buyer who would have fit a moment later, never let one
    through: the conditional UPDATE still decides.
    """
    rows = await raw.fetch(_LEFT, [line.option_id for line in lines])
    left = {int(row["id"]): int(row["stock"]) for row in rows}
    return all(left.get(line.option_id, 0) >= line.quantity for line in lines)


async def return_units(conn: AsyncConnection, lines: Sequence[Line]) -> None:
    for line in lines:
        await conn.execute(_RETURN, {"id": line.option_id, "qty": line.quantity})


async def active_strategy(raw: Raw) -> str | None:
    return cast("str | None", await raw.fetchval(_RAW_ACTIVE_NOW))


def strategy_moved(active: str | None, strategy: str) -> StrategyMoved:
    return StrategyMoved(f"stock strategy is {active!r}, not {strategy!r}")


async def confirm_in(raw: Raw, key: str, *, strategy: str) -> None:
    """Mark a pending reservation confirmed (its order is written); idempotent."""
    if await raw.fetchval(_CONFIRM, key, strategy) is None:
        active = await active_strategy(raw)
        if active != strategy:
            raise strategy_moved(active, strategy)
        status = await raw.fetchval(_RAW_STATUS, key)
        if status == ReservationStatus.PENDING:
            # Only the fence refuses a pending reservation: the strategy moved away and back
            # between that statement and these reads (a switch back re-imports the record as
            # pending). The switch machinery asks the active strategy again, which confirms.
            raise strategy_moved(active, strategy)
        if status not in (ReservationStatus.CONFIRMED, ReservationStatus.SOLD):
            # Released (swept as abandoned), never made, or left ``moved`` by a switch to the
            # counter whose Redis record ended there (a switch back re-imports every record
            # still holding units): the order just written holds no units, and confirming it
            # would sell what is no longer set aside.
            raise ReservationLost(key)


async def confirm_all_in(raw: Raw, keys: Sequence[str], *, strategy: str) -> set[str]:
    """Confirm every pending reservation of ``keys`` in one statement; returns those it
    confirmed. A key it did not (already confirmed, released, moved, or the fence said no)
    owes its caller ``confirm_in``'s answer (see ``PostgresStock.confirm``)."""
    rows = await raw.fetch(_CONFIRM_ALL, list(keys), strategy)
    return {str(row["key"]) for row in rows}


async def settle_release(
    conn: AsyncConnection, key: str, *, strategy: str
) -> HeldReservation | None:
    """Mark an open reservation released; returns it only if this call released it."""
    row = (await conn.execute(_RELEASE, {"key": key, "strategy": strategy})).first()
    if row is None:
        await ensure_active(conn, strategy)
        return None
    return HeldReservation(
        key=key,
        lines=lines_from_json(json_value(row.lines)),
        status=ReservationStatus.RELEASED,
        buyer=row.buyer,
        created_at=row.created_at.timestamp(),
    )


_UNCOUNT = text(
    "UPDATE stock_buyer_tally SET units = greatest(units - :units, 0) "
    "WHERE option_id = :option_id AND buyer = :buyer"
)


async def uncount_for_buyer(conn: AsyncConnection, buyer: str, lines: Sequence[Line]) -> None:
    for line in lines:
        await conn.execute(
            _UNCOUNT, {"option_id": line.option_id, "buyer": buyer, "units": line.quantity}
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
        .where(
            reservation.c.key.in_(list(keys)),
            reservation.c.status == ReservationStatus.CONFIRMED.value,
        )
        .values(status=ReservationStatus.SOLD.value, settled_at=func.now())
    )


async def release_in(conn: AsyncConnection, key: str, *, strategy: str) -> None:
    """Give a reservation's units (and its buyer's allowance) back, once.

    Row locks are taken in the order ``reserve`` takes them — the buyer's tally rows, then
    the option rows — so a release and a reservation of the same buyer cannot deadlock.
    """
    released = await settle_release(conn, key, strategy=strategy)
    if released is not None:
        if released.buyer is not None:
            await uncount_for_buyer(conn, released.buyer, released.lines)
        await return_units(conn, released.lines)

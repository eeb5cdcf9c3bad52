"""Stock state as it moves between stores during a live switch, and its PostgreSQL side.

A strategy keeps three things: what is left per option, the reservations still holding
units (pending or confirmed), and the per-buyer tallies. The PostgreSQL-backed strategies
(``db``, ``redlock``) keep them in ``option.stock``, ``stock_reservation`` and
``stock_buyer_tally``; the counter strategy keeps them in Redis. A switch exports the state
from one home and imports it into the other inside the fence, so every unit and every
reservation has exactly one home at any time.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.adapters.db.stock_rows import (
    OPEN_STATUSES,
    db_stock,
    lines_to_json,
    open_reservations,
    option,
    reservation,
    retire_reservations,
    tally,
)
from shop.domain.stock.model import HeldReservation, ReservationStatus

_CHUNK = 1000


class StateLost(Exception):
    """A store lost (part of) the stock state while it was being moved, read or written.

    Raised by a home instead of handing over or publishing a partial state: the caller rolls
    its PostgreSQL transaction back, so the state stays where it was.
    """


@dataclass
class StockState:
    """Everything a strategy holds; ``remaining`` may name only some options (the rest keep
    their ``option.stock``)."""

    remaining: dict[int, int] = field(default_factory=dict)
    held: list[HeldReservation] = field(default_factory=list)
    tallies: dict[tuple[int, str], int] = field(default_factory=dict)


async def export_postgres_state(conn: AsyncConnection) -> StockState:
    remaining = {
        int(row.id): int(row.stock)
        for row in await conn.execute(select(option.c.id, option.c.stock))
    }
    tallies = {
        (int(row.option_id), str(row.buyer)): int(row.units)
        for row in await conn.execute(
            select(tally.c.option_id, tally.c.buyer, tally.c.units).where(tally.c.units > 0)
        )
    }
    return StockState(remaining=remaining, held=await open_reservations(conn), tallies=tallies)


async def vacate_postgres(conn: AsyncConnection) -> None:
    """The state now lives in Redis: mark open reservations moved, drop the tallies.

    ``option.stock`` stays as it was, as the mirror the sync job keeps up to date.
    """
    await conn.execute(
        update(reservation)
        .where(reservation.c.status.in_(OPEN_STATUSES))
        .values(status=ReservationStatus.MOVED.value, settled_at=func.now())
    )
    await conn.execute(delete(tally))


_SET_STOCK = text(
    "UPDATE option SET stock = v.remaining "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:remaining AS integer[])) AS v(id, remaining) "
    "WHERE option.id = v.id AND option.stock IS DISTINCT FROM v.remaining"
)


async def set_db_stock(conn: AsyncConnection, remaining: dict[int, int]) -> int:
    """Write what is left per option in one statement; returns how many rows changed."""
    if not remaining:
        return 0
    ids = sorted(remaining)
    result = await conn.execute(
        _SET_STOCK, {"ids": ids, "remaining": [remaining[option_id] for option_id in ids]}
    )
    return int(cast("int", getattr(result, "rowcount", 0)) or 0)


async def import_postgres_state(conn: AsyncConnection, state: StockState) -> None:
    """Make PostgreSQL hold ``state``: stock per option, the reservations, the tallies."""
    await set_db_stock(conn, state.remaining)
    for start in range(0, len(state.held), _CHUNK):
        rows = [
            {
                "key": held.key,
                "lines": lines_to_json(held.lines),
                "status": held.status,
                "buyer": held.buyer,
                "created_at": datetime.datetime.fromtimestamp(held.created_at, datetime.UTC),
            }
            for held in state.held[start : start + _CHUNK]
        ]
        statement = insert(reservation).values(rows)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=[reservation.c.key],
                set_={
                    "lines": statement.excluded.lines,
                    "status": statement.excluded.status,
                    "buyer": statement.excluded.buyer,
                    "created_at": statement.excluded.created_at,
                    "settled_at": None,
                },
            )
        )
    await conn.execute(delete(tally))
    entries = [
        {"option_id": option_id, "buyer": buyer, "units": units}
        for (option_id, buyer), units in sorted(state.tallies.items())
        if units > 0
    ]
    for start in range(0, len(entries), _CHUNK):
        await conn.execute(insert(tally).values(entries[start : start + _CHUNK]))


class PostgresHome:
    """The state of the PostgreSQL-backed strategies, as the switch and the jobs see it."""

    name = "postgres"

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def prepare(self) -> None:
        """Nothing to do: PostgreSQL never loses the state it committed."""

    async def export_state(self, conn: AsyncConnection) -> StockState:
        return await export_postgres_state(conn)

    async def import_state(self, conn: AsyncConnection, state: StockState) -> None:
        await import_postgres_state(conn, state)

    async def vacate(self, conn: AsyncConnection) -> None:
        await vacate_postgres(conn)

    async def after_vacate(self) -> None:
        """Nothing to clean outside the transaction."""

    async def intact(self, conn: AsyncConnection) -> bool:
        """PostgreSQL keeps what it committed (and what this transaction wrote)."""
        return True

    async def open_reservations(self) -> list[HeldReservation]:
        async with self._engine.connect() as conn:
            return await open_reservations(conn)

    async def retire(self, keys: Sequence[str]) -> None:
        async with self._engine.begin() as conn:
            await retire_reservations(conn, keys)

    async def remaining(self, option_ids: Sequence[int]) -> Mapping[int, int | None]:
        """What this home sells from: ``option.stock``."""
        async with self._engine.connect() as conn:
            return dict(await db_stock(conn, option_ids))

    async def figures(self, option_ids: Sequence[int]) -> Mapping[int, Mapping[str, int | None]]:
        """Nothing beyond ``option.stock``, which every status row carries already."""
        return {}

    async def sync(self) -> int:
        """``option.stock`` is the state itself: nothing to write back."""
        return 0

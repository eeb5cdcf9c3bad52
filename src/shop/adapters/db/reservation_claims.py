"""Who may use a stock reservation: one order, or nobody — decided once, in PostgreSQL.

The sweep used to read order states, then release the reservations it found without an
order; a retry that wrote its order and confirmed in between lost its units to the sweep
(check-then-act). Now both sides *claim* the reservation key in ``reservation_claim``: the
order insert claims it for its order in the same statement that writes the order, and a
process about to give back the units of an abandoned reservation (the sweep, or a purchase
whose write failed) claims it ``void`` first. The primary key arbitrates: the second insert
of a race waits for the first to commit and then finds its outcome. So a reservation's units
go back on sale only once no order can ever hold them, whatever the strategy, because the
arbiter sits in the ledger that says what was sold.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shop.adapters.db.stock_fence import FENCE_LOCK
from shop.domain.stock.model import ReservationStatus

VOID = "void"

# The order insert claims its key in the statement that writes it (``ADD``, or ``ADD_ORDERS``
# for a batch, in ``adapters/db/purchase_statements.py``), guarded by the generation fence for
# a reservation taken from the counter: one taken from a state Redis lost since was already
# counted as unsold by the rebuild.
ORDER = "order"
GENERATION_ALIVE_SQL = f"shop_stock_generation_alive({FENCE_LOCK}, %s)"

_VOID = text(
    f"INSERT INTO reservation_claim (key, outcome) VALUES (:key, '{VOID}') "
    "ON CONFLICT (key) DO NOTHING RETURNING outcome"
)
_OUTCOME = text("SELECT outcome FROM reservation_claim WHERE key = :key")


async def claim_void(conn: AsyncConnection, key: str) -> bool:
    """Claim ``key`` for nobody; ``True`` if no order holds it now or ever will.

    Two statements on purpose: when the insert meets a row that committed after it started,
    only a later statement's snapshot can read that row's outcome.
    """
    if (await conn.execute(_VOID, {"key": key})).first() is not None:
        return True
    return (await conn.execute(_OUTCOME, {"key": key})).scalar() == VOID


_LOST = text(
    "INSERT INTO stock_lost_generation (generation) VALUES (:generation) ON CONFLICT DO NOTHING"
)


async def mark_generation_lost(conn: AsyncConnection, generation: str) -> None:
    """From now on no order may hold a reservation taken from this counter state; the caller
    holds the stock fence exclusively and commits before reading the ledger."""
    await conn.execute(_LOST, {"generation": generation})


# Reservations a switch moved from PostgreSQL into the counter state (their row says
# ``moved``) carry no generation of their own: they lived in the state that was lost too.
_VOID_MOVED = text(
    "INSERT INTO reservation_claim (key, outcome) "
    f"SELECT key, '{VOID}' FROM stock_reservation "
    f"WHERE status = '{ReservationStatus.MOVED.value}' "
    "ON CONFLICT (key) DO NOTHING"
)


async def void_moved_reservations(conn: AsyncConnection) -> None:
    """After a counter state was lost: no order may hold a reservation that a switch had
    moved into it and that has no order yet (its units were counted unsold by the rebuild).
    Orders already written hold their claim; one being written meanwhile either commits
    first (the primary key makes this insert wait) or is refused."""
    await conn.execute(_VOID_MOVED)

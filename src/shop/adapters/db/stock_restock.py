"""Idempotent restocks: the key recorded in the transaction that raises ``stock_total``.

Every strategy raises ``stock_total`` in PostgreSQL (the ledger), so the ledger side of a
restock is made idempotent in one place: the ``stock_restock`` row and the increase commit
together or not at all. A strategy with a second store (the counter's Redis) decides from
the returned record whether its own step still has to run (see ``stock_counter``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shop.adapters.db.tables import StockRestockRow
from shop.domain.errors import InvalidInput

restock = cast("Table", StockRestockRow.__table__)


@dataclass(frozen=True)
class RestockRecord:
    """A restock the ledger already holds."""

    option_id: int
    units: int
    counter_generation: str | None


async def record_restock(
    conn: AsyncConnection,
    key: str,
    option_id: int,
    units: int,
    *,
    counter_generation: str | None = None,
) -> RestockRecord | None:
    """Record the restock under ``key``; ``None`` means this call is the first, and the caller
    raises ``stock_total`` in this same transaction.

    Otherwise return the earlier record: its units are in the ledger already. Two retries
    racing on one key queue on the primary key: the second waits for the first to commit
    (or roll back) and then finds its row (or records its own). ``InvalidInput`` when the
    key was used for another option or number of units.
    """
    recorded = await conn.execute(
        insert(restock)
        .values(key=key, option_id=option_id, units=units, counter_generation=counter_generation)
        .on_conflict_do_nothing(index_elements=[restock.c.key])
        .returning(restock.c.key)
    )
    if recorded.first() is not None:
        return None
    row = (
        await conn.execute(
            select(restock.c.option_id, restock.c.units, restock.c.counter_generation).where(
                restock.c.key == key
            )
        )
    ).one()
    earlier = RestockRecord(int(row.option_id), int(row.units), row.counter_generation)
    if (earlier.option_id, earlier.units) != (option_id, units):
        raise InvalidInput(
            "this Idempotency-Key was already used for another restock "
            f"({earlier.units} unit(s) of option {earlier.option_id}); "
            "send a new key for a new restock",
            extra={"option_id": earlier.option_id, "units": earlier.units},
        )
    return earlier

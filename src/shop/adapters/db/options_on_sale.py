"""``OptionsOnSale`` outside drops: the options people are buying now.

A drop names its options (the snapshot adds them, see ``observation.services``); outside
drops "on sale now" has no record of its own, so it is read from what the ledger shows: the
options of the most recent order lines, then the newest options (a sale that has not sold
its first unit yet). Both reads walk a primary key backwards and stop after a fixed number
of rows, so the cost does not grow with the order history, which matters for a query the
worker runs every second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.adapters.db.tables import OptionRow, OrderLineRow

option = cast("Table", OptionRow.__table__)
order_line = cast("Table", OrderLineRow.__table__)

RECENT_LINES = 2000


class RecentlySoldOptions:
    """Up to ``limit`` options: recently bought first, then the newest ones put on sale."""

    def __init__(self, engine: AsyncEngine, *, limit: int = 20, newest: int = 5) -> None:
        self._engine = engine
        self._limit = limit
        self._newest = newest

    async def on_sale_now(self) -> Sequence[int]:
        recent = select(order_line.c.option_id).order_by(order_line.c.id.desc()).limit(RECENT_LINES)
        newest = (
            select(option.c.id)
            .where(option.c.stock_total > 0)
            .order_by(option.c.id.desc())
            .limit(self._newest)
        )
        async with self._engine.connect() as conn:
            bought = [int(row[0]) for row in await conn.execute(recent)]
            fresh = [int(row[0]) for row in await conn.execute(newest)]
        chosen: list[int] = []
        for option_id in [*bought, *fresh]:
            if option_id not in chosen:
                chosen.append(option_id)
            if len(chosen) == self._limit:
                break
        return sorted(chosen)

"""``PurchaseTally`` on the order-line identity: the highest ``order_line.id`` only grows,
and reading it is one backwards step on the primary key, whatever the table's size. Ids of
rolled-back inserts are skipped, not reused, so a failed write can count once; that
inaccuracy is the price of a purchase rate with no counter shared between processes."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.adapters.db.tables import OrderLineRow

order_line = cast("Table", OrderLineRow.__table__)


class OrderLineTally:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def lines_written(self) -> int:
        async with self._engine.connect() as conn:
            highest = (await conn.execute(select(func.max(order_line.c.id)))).scalar_one()
        return int(highest or 0)

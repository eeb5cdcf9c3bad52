"""Popularity scores on PostgreSQL: one set-based recompute, one runner at a time."""

from __future__ import annotations

from sqlalchemy import (
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.domain.catalog.model import (
    PopularityWeights,
)
from shop.domain.orders.status import OrderStatus

# Transaction-scoped advisory lock (arbitrary constant, unique within the shop).
POPULARITY_LOCK = 0x5_CA7_0002


RECOMPUTE_POPULARITY = text(
    """
    WITH units AS (
        SELECT line.product_id, SUM(line.quantity) AS units
        FROM order_line AS line
        JOIN purchase_order AS o ON o.id = line.order_id
        WHERE o.status = ANY(CAST(:counted AS text[]))
        GROUP BY line.product_id
    ), wishes AS (
        SELECT product_id, COUNT(*) AS wishes
        FROM wish
        WHERE created_at >= now() - make_interval(secs => CAST(:window AS double precision))
        GROUP BY product_id
    ), scores AS (
        SELECT p.id,
               :units_weight * COALESCE(u.units, 0) + :wish_weight * COALESCE(w.wishes, 0)
                   AS score
        FROM product AS p
        LEFT JOIN units AS u ON u.product_id = p.id
        LEFT JOIN wishes AS w ON w.product_id = p.id
    )
    UPDATE product
    SET popularity = scores.score
    FROM scores
    WHERE product.id = scores.id AND product.popularity <> scores.score
    """
)


class SqlPopularityScores:
    """One set-based UPDATE; only rows whose score changed are written (no table rewrite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def recompute(self, weights: PopularityWeights) -> int | None:
        async with self._engine.begin() as conn:
            if not await _try_lock(conn, POPULARITY_LOCK):
                return None
            result = await conn.execute(
                RECOMPUTE_POPULARITY,
                {
                    "counted": OrderStatus.values(OrderStatus.COUNTS_FOR_POPULARITY),
                    "window": weights.wish_window_seconds,
                    "units_weight": weights.units,
                    "wish_weight": weights.wish,
                },
            )
            return int(result.rowcount)


async def _try_lock(conn: AsyncConnection, key: int) -> bool:
    return bool(await conn.scalar(select(func.pg_try_advisory_xact_lock(key))))

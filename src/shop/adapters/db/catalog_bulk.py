"""Bulk loading a sample catalog with PostgreSQL COPY (``shop seed``, benchmarks).

Row-by-row INSERTs through the ORM manage a few thousand products a second; COPY of
pre-built tuples loads 100k products with their options, images and category links in
seconds. Ids are drawn from the tables' own identity sequences first, so the rows can
reference each other inside one COPY stream per table and later inserts never collide.
Everything is one transaction: an interrupted seed leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.domain.catalog.bulk import LoadedCatalog, SampleCatalog

_TABLES = ("category", "product", "product_category", "option", "product_image")


async def _allocate(pg: Any, table: str, count: int) -> list[int]:
    if count == 0:
        return []
    rows = await pg.fetch(
        "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)",
        table,
        count,
    )
    return [row[0] for row in rows]


class PostgresCatalogBulkLoad:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def load(self, sample: SampleCatalog, *, stock_in_ledger: bool) -> LoadedCatalog:
        async with self._engine.begin() as conn:
            raw = await conn.get_raw_connection()
            pg: Any = raw.driver_connection  # asyncpg.Connection, inside our transaction
            category_ids = await _allocate(pg, "category", len(sample.categories))
            product_ids = await _allocate(pg, "product", len(sample.products))
            option_ids = await _allocate(pg, "option", sample.option_count)
            await pg.copy_records_to_table(
                "category",
                columns=["id", "parent_id", "name", "position"],
                records=[
                    (
                        category_ids[c.key],
                        None if c.parent_key is None else category_ids[c.parent_key],
                        c.name,
                        c.position,
                    )
                    for c in sample.categories
                ],
            )
            await pg.copy_records_to_table(
                "product",
                columns=["id", "name", "description", "price", "created_at", "updated_at"],
                records=[
                    (pid, p.name, p.description, p.price, p.created_at, p.created_at)
                    for pid, p in zip(product_ids, sample.products, strict=True)
                ],
            )
            await pg.copy_records_to_table(
                "product_category",
                columns=["product_id", "category_id"],
                records=[
                    (pid, category_ids[key])
                    for pid, p in zip(product_ids, sample.products, strict=True)
                    for key in p.category_keys
                ],
            )
            option_rows = []
            option_units = []
            next_option = iter(option_ids)
            for pid, p in zip(product_ids, sample.products, strict=True):
                for position, o in enumerate(p.options):
                    oid = next(next_option)
                    units = o.stock if stock_in_ledger else 0
                    option_rows.append((oid, pid, o.name, o.price, units, units, position))
                    option_units.append((oid, o.stock))
            await pg.copy_records_to_table(
                "option",
                columns=["id", "product_id", "name", "price", "stock_total", "stock", "position"],
                records=option_rows,
            )
            await pg.copy_records_to_table(
                "product_image",
                columns=["product_id", "url", "position"],
                records=[
                    (pid, url, position)
                    for pid, p in zip(product_ids, sample.products, strict=True)
                    for position, url in enumerate(p.images)
                ],
            )
        # Fresh statistics for the planner, and a visibility map so that index-only scans
        # (category probes, keyset walks) need not visit the heap. VACUUM refuses to run in
        # a transaction block, hence autocommit.
        async with self._engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text(f"VACUUM ANALYZE {', '.join(_TABLES)}"))
        return LoadedCatalog(
            category_ids=category_ids, product_ids=product_ids, option_units=option_units
        )

"""Catalog listings on PostgreSQL: hand-written keyset queries and the plan they choose.

They must stay index scans whatever the page, which a generic repository cannot promise:
``listing_statement`` walks the sort index, or gathers a dense category's products first,
as ``SUBTREE_PROBE`` decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Select,
    exists,
    literal,
    select,
    text,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.adapters.db.catalog_rows import (
    category,
    category_of,
    image,
    image_of,
    option,
    option_of,
    product,
    product_category,
    summary_columns,
    summary_of,
)
from shop.domain.catalog.model import (
    CategoryTree,
    ListingQuery,
    NewestAfter,
    Option,
    PopularAfter,
    Product,
    ProductSummary,
    Sort,
)

SUBTREE_PROBE = text(
    """
    WITH RECURSIVE subtree(id) AS (
        SELECT id FROM category WHERE id = :category_id
        UNION
        SELECT child.id FROM category AS child JOIN subtree ON child.parent_id = subtree.id
    ), bound AS (
        SELECT coalesce(
            CAST(:fixed_bound AS integer),
            greatest(100, floor(sqrt((:page_rows) * greatest(reltuples, 0))))::integer
        ) AS n
        FROM pg_class WHERE oid = 'product'::regclass
    )
    SELECT
        (SELECT array_agg(id) FROM subtree) AS ids,
        (SELECT n FROM bound) AS bound,
        (SELECT count(*) FROM (
            SELECT 1 FROM subtree CROSS JOIN LATERAL (
                SELECT 1 FROM product_category AS pc
                WHERE pc.category_id = subtree.id LIMIT (SELECT n FROM bound)
            ) AS linked
            LIMIT (SELECT n FROM bound)
        ) AS counted) AS links
    """
)
"""The category's subtree (a recursive CTE; UNION, not UNION ALL, so that even a cycle that
slipped into the data would end the recursion), and whether it is "dense": it holds at least
``bound`` product links, counted no further than that (per category through
``product_category_category_idx``, so the probe never reads more than ``bound`` entries).

``bound`` is where the two ways of finding a page cost the same: walking the sort index
reads about page_rows x products / links rows, gathering the category's products reads
about links rows; they meet at sqrt(page_rows x products) — 1,450 links at 100k products.
"""


class SqlCatalogReads:
    """``dense_links`` fixes from how many product links a category counts as large (see
    ``listing_statement``); None derives it from the catalog's size. Tests pin it to drive
    both plans on small data."""

    def __init__(self, engine: AsyncEngine, *, dense_links: int | None = None) -> None:
        self._engine = engine
        self._dense_links = dense_links

    async def category_tree(self) -> CategoryTree:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(category))
            return CategoryTree(category_of(row) for row in rows)

    async def category_exists(self, category_id: int) -> bool:
        async with self._engine.connect() as conn:
            return bool(await conn.scalar(select(exists().where(category.c.id == category_id))))

    async def product(self, product_id: int) -> Product | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(product).where(product.c.id == product_id))).first()
            if row is None:
                return None
            categories = await conn.execute(
                select(category)
                .join(product_category, product_category.c.category_id == category.c.id)
                .where(product_category.c.product_id == product_id)
                .order_by(category.c.id)
            )
            options = await conn.execute(
                select(option)
                .where(option.c.product_id == product_id)
                .order_by(option.c.position, option.c.id)
            )
            images = await conn.execute(
                select(image)
                .where(image.c.product_id == product_id)
                .order_by(image.c.position, image.c.id)
            )
            return Product(
                id=row.id,
                name=row.name,
                description=row.description,
                price=row.price,
                popularity=row.popularity,
                created_at=row.created_at,
                updated_at=row.updated_at,
                categories=tuple(category_of(r) for r in categories),
                options=tuple(option_of(r) for r in options),
                images=tuple(image_of(r) for r in images),
            )

    async def option(self, option_id: int) -> Option | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(option).where(option.c.id == option_id))).first()
        return None if row is None else option_of(row)

    async def listing(self, query: ListingQuery) -> list[ProductSummary]:
        async with self._engine.connect() as conn:
            subtree: CategoryFilter | None = None
            if query.category_id is not None:
                probe = (
                    await conn.execute(
                        SUBTREE_PROBE,
                        {
                            "category_id": query.category_id,
                            "fixed_bound": self._dense_links,
                            "page_rows": query.limit + 1,
                        },
                    )
                ).one()
                if not probe.ids:
                    return []
                subtree = CategoryFilter(ids=list(probe.ids), dense=probe.links >= probe.bound)
            rows = await conn.execute(listing_statement(query, subtree))
            return [summary_of(row) for row in rows]

    async def most_popular(self, limit: int) -> list[ProductSummary]:
        statement = listing_statement(ListingQuery(sort=Sort.POPULAR, limit=limit)).limit(limit)
        async with self._engine.connect() as conn:
            return [summary_of(row) for row in await conn.execute(statement)]


@dataclass(frozen=True, slots=True)
class CategoryFilter:
    ids: list[int]  # the category and its descendants
    dense: bool  # holds enough products that walking the sort index finds a page quickly


def listing_statement(query: ListingQuery, subtree: CategoryFilter | None = None) -> Select[Any]:
    """``limit + 1`` rows strictly after the position, in one (key DESC, id DESC) order.

    Without a category, or with a large one, the page is a walk down the sort index that
    stops after ``limit + 1`` matches: the row comparison ``(key, id) < (:key, :id)`` is an
    index condition, so page 1,000 starts where page 1 does, at an index seek. A small
    category would make that walk read most of the index to find a few matches, so its
    products are gathered first (through ``product_category_category_idx``) and the page is
    cut from them. Either way a page reads about sqrt(limit x products) rows at most
    (~1,500 at 100k products), whatever its depth.
    """
    key = product.c.created_at if query.sort is Sort.NEWEST else product.c.popularity
    boundary: tuple[Any, int] | None = None
    if isinstance(query.after, NewestAfter):
        boundary = (query.after.created_at, query.after.id)
    elif isinstance(query.after, PopularAfter):
        boundary = (query.after.popularity, query.after.id)
    statement = summary_columns()
    if subtree is not None:
        in_subtree = product_category.c.category_id.in_(subtree.ids)
        if subtree.dense:
            statement = statement.where(
                exists().where(product_category.c.product_id == product.c.id, in_subtree)
            )
        else:
            gathered = (
                select(product_category.c.product_id)
                .where(in_subtree)
                .distinct()
                .cte("gathered")
                .prefix_with("MATERIALIZED")
            )
            statement = statement.join(gathered, gathered.c.product_id == product.c.id)
    if boundary is not None:
        statement = statement.where(
            tuple_(key, product.c.id)
            < tuple_(literal(boundary[0], key.type), literal(boundary[1], product.c.id.type))
        )
    return statement.order_by(key.desc(), product.c.id.desc()).limit(query.limit + 1)

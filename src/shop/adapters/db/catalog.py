"""The catalog on PostgreSQL: advanced-alchemy repositories for writes, Core for reads.

Writes run in one session per unit of work (``SqlCatalogUnitOfWork``); leaving it without
``commit`` rolls back. Listings are hand-written keyset queries: they must stay index scans
whatever the page, which a generic repository cannot promise.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import (
    Select,
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from shop.adapters.db.sqlstate import LOCK_NOT_AVAILABLE, sqlstate_of
from shop.adapters.db.tables import (
    CategoryRow,
    OptionRow,
    OrderLineRow,
    ProductCategoryRow,
    ProductImageRow,
    ProductRow,
    StockBuyerTallyRow,
)
from shop.adapters.db.unit_of_work import SessionUnitOfWork
from shop.domain.catalog.model import (
    Category,
    CategoryChange,
    CategoryTree,
    CreatedProduct,
    Image,
    ListingQuery,
    NewCategory,
    NewestAfter,
    NewOption,
    NewProduct,
    Option,
    PopularAfter,
    PopularityWeights,
    Product,
    ProductChange,
    ProductSummary,
    Sort,
)
from shop.domain.errors import Conflict, NotFound, Unavailable
from shop.domain.orders.status import OrderStatus

category = cast("Table", CategoryRow.__table__)
product = cast("Table", ProductRow.__table__)
product_category = cast("Table", ProductCategoryRow.__table__)
option = cast("Table", OptionRow.__table__)
image = cast("Table", ProductImageRow.__table__)
order_line = cast("Table", OrderLineRow.__table__)
buyer_tally = cast("Table", StockBuyerTallyRow.__table__)

# Transaction-scoped advisory locks (arbitrary constants, unique within the shop).
CATEGORY_TREE_LOCK = 0x5_CA7_0001
POPULARITY_LOCK = 0x5_CA7_0002
# How long a product delete keeps trying to lock rows that purchases hold (see ``delete``).
DELETE_LOCK_BUDGET = 2.0
_DELETE_RETRY_MAX = 0.05


class CategoryRepository(SQLAlchemyAsyncRepository[CategoryRow]):
    model_type = CategoryRow


class ProductRepository(SQLAlchemyAsyncRepository[ProductRow]):
    model_type = ProductRow


class OptionRepository(SQLAlchemyAsyncRepository[OptionRow]):
    model_type = OptionRow


class ImageRepository(SQLAlchemyAsyncRepository[ProductImageRow]):
    model_type = ProductImageRow


def _category(row: Any) -> Category:
    return Category(id=row.id, name=row.name, parent_id=row.parent_id, position=row.position)


def _option(row: Any) -> Option:
    return Option(
        id=row.id,
        product_id=row.product_id,
        name=row.name,
        price=row.price,
        stock_total=row.stock_total,
        position=row.position,
    )


def _image(row: Any) -> Image:
    return Image(id=row.id, url=row.url, position=row.position)


def _summary(row: Any) -> ProductSummary:
    return ProductSummary(
        id=row.id,
        name=row.name,
        price=row.price,
        popularity=row.popularity,
        created_at=row.created_at,
        image_url=row.image_url,
    )


def first_image_url() -> Any:
    """The product's first image (lowest position), for listing cards."""
    return (
        select(image.c.url)
        .where(image.c.product_id == product.c.id)
        .order_by(image.c.position, image.c.id)
        .limit(1)
        .scalar_subquery()
        .label("image_url")
    )


def summary_columns() -> Select[Any]:
    return select(
        product.c.id,
        product.c.name,
        product.c.price,
        product.c.popularity,
        product.c.created_at,
        first_image_url(),
    )


class SqlCategories:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._repo = CategoryRepository(session=session, auto_commit=False)

    async def tree(self) -> CategoryTree:
        await self._session.execute(
            select(func.pg_advisory_xact_lock(bindparam("key", CATEGORY_TREE_LOCK)))
        )
        rows = await self._session.execute(select(category))
        return CategoryTree(_category(row) for row in rows)

    async def add(self, new: NewCategory) -> Category:
        row = await self._repo.add(
            CategoryRow(name=new.name, parent_id=new.parent_id, position=new.position)
        )
        return _category(row)

    async def update(self, category_id: int, change: CategoryChange) -> Category:
        row = await self._repo.get_one_or_none(id=category_id)
        if row is None:
            raise NotFound(f"category {category_id} does not exist")
        updated = change.applied_to(_category(row))
        row.name, row.parent_id, row.position = updated.name, updated.parent_id, updated.position
        return _category(await self._repo.update(row))

    async def _lock(self, category_ids: Sequence[int]) -> None:
        """Row locks that conflict with the key-share locks product writes take on the
        categories they link to: no product can be linked to these until we commit."""
        await self._session.execute(
            select(category.c.id)
            .where(category.c.id.in_(list(category_ids)))
            .order_by(category.c.id)
            .with_for_update()
        )

    async def product_count(self, category_id: int) -> int:
        await self._lock([category_id])
        count = await self._session.scalar(
            select(func.count())
            .select_from(product_category)
            .where(product_category.c.category_id == category_id)
        )
        return int(count or 0)

    async def move_contents(self, category_id: int, to: int) -> None:
        await self._lock(sorted({category_id, to}))
        await self._session.execute(
            update(category).where(category.c.parent_id == category_id).values(parent_id=to)
        )
        await self._session.execute(
            pg_insert(product_category)
            .from_select(
                ["product_id", "category_id"],
                select(product_category.c.product_id, literal(to)).where(
                    product_category.c.category_id == category_id
                ),
            )
            .on_conflict_do_nothing()
        )

    async def delete(self, category_ids: Sequence[int]) -> None:
        await self._lock(category_ids)
        await self._session.execute(
            delete(product_category).where(product_category.c.category_id.in_(category_ids))
        )
        # Children before parents: the parent_id foreign key is RESTRICT.
        for category_id in category_ids:
            await self._session.execute(delete(category).where(category.c.id == category_id))


class SqlProducts:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._products = ProductRepository(session=session, auto_commit=False)
        self._options = OptionRepository(session=session, auto_commit=False)
        self._images = ImageRepository(session=session, auto_commit=False)

    async def check_categories(self, category_ids: Sequence[int]) -> None:
        wanted = sorted(set(category_ids))
        if not wanted:
            return
        found = await self._session.scalars(
            select(category.c.id)
            .where(category.c.id.in_(wanted))
            .order_by(category.c.id)
            .with_for_update(key_share=True)
        )
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise NotFound(
                f"unknown categories: {', '.join(map(str, missing))}",
                extra={"category_ids": missing},
            )

    async def _link(self, product_id: int, category_ids: Sequence[int]) -> None:
        links = [{"product_id": product_id, "category_id": c} for c in sorted(set(category_ids))]
        if links:
            await self._session.execute(insert(product_category), links)

    async def add(self, new: NewProduct) -> CreatedProduct:
        row = await self._products.add(
            ProductRow(name=new.name, description=new.description, price=new.price)
        )
        options = await self._options.add_many(
            [
                OptionRow(
                    product_id=row.id,
                    name=item.name,
                    price=new.price_of(item),
                    stock_total=0,
                    stock=0,
                    position=position,
                )
                for position, item in enumerate(new.options)
            ]
        )
        if new.images:
            await self._images.add_many(
                [
                    ProductImageRow(product_id=row.id, url=url, position=position)
                    for position, url in enumerate(new.images)
                ]
            )
        await self._link(row.id, new.category_ids)
        by_name = {item.name: item.stock for item in new.options}
        return CreatedProduct(
            product_id=row.id,
            option_stock=tuple((saved.id, by_name[saved.name]) for saved in options),
        )

    async def _existing(self, product_id: int) -> ProductRow:
        row = await self._products.get_one_or_none(id=product_id)
        if row is None:
            raise NotFound(f"product {product_id} does not exist")
        return row

    async def update(self, product_id: int, change: ProductChange) -> None:
        values: dict[str, Any] = {
            name: value
            for name, value in (
                ("name", change.name),
                ("description", change.description),
                ("price", change.price),
            )
            if value is not None
        }
        updated = await self._session.execute(
            update(product)
            .where(product.c.id == product_id)
            .values(**values, updated_at=func.now())
            .returning(product.c.id)
        )
        if updated.first() is None:
            raise NotFound(f"product {product_id} does not exist")
        if change.category_ids is not None:
            await self._session.execute(
                delete(product_category).where(product_category.c.product_id == product_id)
            )
            await self._link(product_id, change.category_ids)

    async def delete(self, product_id: int) -> None:
        """Lock every row the delete removes that a purchase also locks, then delete.

        A purchase locks the same rows (``stock_buyer_tally`` and ``option`` in a ``db`` or
        ``redlock`` reservation, ``option`` and ``product`` key-share in the order's foreign
        key checks), each in its own order, so a delete that waited for them while holding
        some could deadlock with a buyer, and PostgreSQL might abort the buyer. The locks
        are therefore taken ``NOWAIT``: the delete never waits while holding one, so it is
        never part of a deadlock. Busy rows make it roll back to a savepoint and retry for
        up to ``DELETE_LOCK_BUDGET`` seconds, then ``Unavailable``. Once it holds them, an
        order either committed before (visible below: 409) or waits for this commit and then
        finds its option gone (``OptionWithdrawn``: 409 for the buyer).
        """
        deadline = time.monotonic() + DELETE_LOCK_BUDGET
        pause = 0.005
        while True:
            try:
                async with self._session.begin_nested():
                    await self._lock_for_delete(product_id)
                break
            except DBAPIError as exc:
                if sqlstate_of(exc) != LOCK_NOT_AVAILABLE:
                    raise
            if time.monotonic() + pause > deadline:
                raise Unavailable(
                    f"product {product_id} is being bought right now; retry the delete shortly"
                )
            await asyncio.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, _DELETE_RETRY_MAX)
        ordered = await self._session.scalar(
            select(exists().where(order_line.c.product_id == product_id))
        )
        if ordered:
            raise _ordered(product_id)
        try:
            await self._session.execute(delete(product).where(product.c.id == product_id))
        except IntegrityError:  # backstop: an order line the locks above did not keep out
            raise _ordered(product_id) from None

    async def _lock_for_delete(self, product_id: int) -> None:
        found = await self._session.scalar(
            select(product.c.id).where(product.c.id == product_id).with_for_update(nowait=True)
        )
        if found is None:
            raise NotFound(f"product {product_id} does not exist")
        option_ids = list(
            await self._session.scalars(
                select(option.c.id)
                .where(option.c.product_id == product_id)
                .order_by(option.c.id)
                .with_for_update(nowait=True)
            )
        )
        if option_ids:
            await self._session.execute(
                select(buyer_tally.c.option_id)
                .where(buyer_tally.c.option_id.in_(option_ids))
                .with_for_update(nowait=True)
            )

    async def add_option(self, product_id: int, option_in: NewOption) -> Option:
        row = await self._existing(product_id)
        same_name = exists().where(
            option.c.product_id == product_id, option.c.name == option_in.name
        )
        taken = await self._session.scalar(select(same_name))
        if taken:
            raise Conflict(
                f"product {product_id} already has an option named {option_in.name!r}",
                extra={"name": option_in.name},
            )
        position = await self._session.scalar(
            select(func.coalesce(func.max(option.c.position) + 1, 0)).where(
                option.c.product_id == product_id
            )
        )
        saved = await self._options.add(
            OptionRow(
                product_id=product_id,
                name=option_in.name,
                price=row.price if option_in.price is None else option_in.price,
                stock_total=0,
                stock=0,
                position=int(position or 0),
            )
        )
        return _option(saved)

    async def add_image(self, product_id: int, url: str, position: int | None) -> Image:
        await self._existing(product_id)
        if position is None:
            position = int(
                await self._session.scalar(
                    select(func.coalesce(func.max(image.c.position) + 1, 0)).where(
                        image.c.product_id == product_id
                    )
                )
                or 0
            )
        saved = await self._images.add(
            ProductImageRow(product_id=product_id, url=url, position=position)
        )
        return _image(saved)


def _ordered(product_id: int) -> Conflict:
    return Conflict(
        f"product {product_id} has been ordered; orders keep their history, so it stays",
        extra={"product_id": product_id},
    )


class SqlCatalogUnitOfWork(SessionUnitOfWork):
    """One session; nothing is committed unless ``commit`` is called."""

    categories: SqlCategories
    products: SqlProducts

    def _open(self, session: AsyncSession) -> None:
        self.categories = SqlCategories(session)
        self.products = SqlProducts(session)


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
            return CategoryTree(_category(row) for row in rows)

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
                categories=tuple(_category(r) for r in categories),
                options=tuple(_option(r) for r in options),
                images=tuple(_image(r) for r in images),
            )

    async def option(self, option_id: int) -> Option | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(option).where(option.c.id == option_id))).first()
        return None if row is None else _option(row)

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
            return [_summary(row) for row in rows]

    async def most_popular(self, limit: int) -> list[ProductSummary]:
        statement = listing_statement(ListingQuery(sort=Sort.POPULAR, limit=limit)).limit(limit)
        async with self._engine.connect() as conn:
            return [_summary(row) for row in await conn.execute(statement)]


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

"""Catalog writes on PostgreSQL: advanced-alchemy repositories inside one unit of work.

Writes run in one session per unit of work (``SqlCatalogUnitOfWork``); leaving it without
``commit`` rolls back. The listing queries are in ``catalog_listing.py``, the popularity SQL
in ``catalog_popularity.py``, the row mapping they share in ``catalog_rows.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import (
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shop.adapters.db.catalog_rows import (
    buyer_tally,
    category,
    category_of,
    image,
    image_of,
    option,
    option_of,
    order_line,
    product,
    product_category,
)
from shop.adapters.db.sqlstate import LOCK_NOT_AVAILABLE, sqlstate_of
from shop.adapters.db.tables import (
    CategoryRow,
    OptionRow,
    ProductImageRow,
    ProductRow,
)
from shop.adapters.db.unit_of_work import SessionUnitOfWork
from shop.domain.catalog.model import (
    Category,
    CategoryChange,
    CategoryTree,
    CreatedProduct,
    Image,
    NewCategory,
    NewOption,
    NewProduct,
    Option,
    ProductChange,
)
from shop.domain.errors import Conflict, NotFound, Unavailable

# Transaction-scoped advisory locks (arbitrary constants, unique within the shop).
CATEGORY_TREE_LOCK = 0x5_CA7_0001
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


class SqlCategories:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._repo = CategoryRepository(session=session, auto_commit=False)

    async def tree(self) -> CategoryTree:
        await self._session.execute(
            select(func.pg_advisory_xact_lock(bindparam("key", CATEGORY_TREE_LOCK)))
        )
        rows = await self._session.execute(select(category))
        return CategoryTree(category_of(row) for row in rows)

    async def add(self, new: NewCategory) -> Category:
        row = await self._repo.add(
            CategoryRow(name=new.name, parent_id=new.parent_id, position=new.position)
        )
        return category_of(row)

    async def update(self, category_id: int, change: CategoryChange) -> Category:
        row = await self._repo.get_one_or_none(id=category_id)
        if row is None:
            raise NotFound(f"category {category_id} does not exist")
        updated = change.applied_to(category_of(row))
        row.name, row.parent_id, row.position = updated.name, updated.parent_id, updated.position
        return category_of(await self._repo.update(row))

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
        return option_of(saved)

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
        return image_of(saved)


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

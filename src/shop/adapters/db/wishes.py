"""Wish lists on PostgreSQL.

A customer's list is held with a transaction-scoped advisory lock keyed by the user id while
it changes, so the cap (checked by the use case) cannot be overrun by parallel requests, and
an add and a remove of the same product are applied one after the other.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import Table, and_, delete, func, literal, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shop.adapters.db.tables import OptionRow, ProductImageRow, ProductRow, WishRow
from shop.domain.errors import NotFound, Unauthorized
from shop.domain.wishes.model import Wish, WishedProduct

wish = cast("Table", WishRow.__table__)
product = cast("Table", ProductRow.__table__)
option = cast("Table", OptionRow.__table__)
image = cast("Table", ProductImageRow.__table__)


class WishRepository(SQLAlchemyAsyncRepository[WishRow]):
    model_type = WishRow


class SqlWishList:
    def __init__(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        self._session = session
        self._user_id = user_id
        self._repo = WishRepository(session=session, auto_commit=False)

    async def product_exists(self, product_id: int) -> bool:
        # KEY SHARE: the product cannot be deleted between this check and our insert.
        found = await self._session.scalar(
            select(product.c.id).where(product.c.id == product_id).with_for_update(key_share=True)
        )
        return found is not None

    async def get(self, product_id: int) -> Wish | None:
        row = await self._repo.get_one_or_none(user_id=self._user_id, product_id=product_id)
        return None if row is None else Wish(product_id=row.product_id, wished_at=row.created_at)

    async def count(self) -> int:
        return await self._repo.count(user_id=self._user_id)

    async def add(self, product_id: int) -> Wish:
        try:
            row = await self._repo.add(WishRow(user_id=self._user_id, product_id=product_id))
        except Exception as exc:
            if _violates(exc, "fk_wish_user_id_user_account"):
                raise Unauthorized("your account no longer exists") from None
            if _violates(exc, "fk_wish_product_id_product"):
                raise NotFound(f"product {product_id} does not exist") from None
            raise
        return Wish(product_id=row.product_id, wished_at=row.created_at)

    async def remove(self, product_id: int) -> None:
        await self._session.execute(
            delete(wish).where(wish.c.user_id == self._user_id, wish.c.product_id == product_id)
        )


def _violates(exc: BaseException, constraint: str) -> bool:
    """advanced-alchemy wraps driver errors; look through the chain for the constraint name."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, IntegrityError) and constraint in str(seen.orig):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class SqlWishes:
    def __init__(self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._engine = engine
        self._sessionmaker = sessionmaker

    @asynccontextmanager
    async def of(self, user_id: uuid.UUID) -> AsyncIterator[SqlWishList]:
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                select(func.pg_advisory_xact_lock(func.hashtextextended(f"wish:{user_id}", 0)))
            )
            yield SqlWishList(session, user_id)

    async def page(
        self, user_id: uuid.UUID, *, after: tuple[datetime, int] | None, limit: int
    ) -> Sequence[WishedProduct]:
        """Newest first, ties by product id ascending: the order of ``wish_user_newest_idx``
        (user_id, created_at DESC, product_id), so a page is one index range scan."""
        first_image = (
            select(image.c.url)
            .where(image.c.product_id == product.c.id)
            .order_by(image.c.position, image.c.id)
            .limit(1)
            .scalar_subquery()
        )
        option_ids = (
            select(func.array_agg(aggregate_order_by(option.c.id, option.c.id)))
            .where(option.c.product_id == product.c.id)
            .scalar_subquery()
        )
        statement = (
            select(
                wish.c.product_id,
                wish.c.created_at,
                product.c.name,
                product.c.price,
                first_image.label("image_url"),
                option_ids.label("option_ids"),
            )
            .join(product, product.c.id == wish.c.product_id)
            .where(wish.c.user_id == user_id)
        )
        if after is not None:
            wished_at, product_id = after
            boundary = literal(wished_at, wish.c.created_at.type)
            statement = statement.where(
                or_(
                    wish.c.created_at < boundary,
                    and_(wish.c.created_at == boundary, wish.c.product_id > product_id),
                )
            )
        statement = statement.order_by(wish.c.created_at.desc(), wish.c.product_id).limit(limit)
        async with self._engine.connect() as conn:
            rows = await conn.execute(statement)
            return [_wished(row) for row in rows]


def _wished(row: Any) -> WishedProduct:
    return WishedProduct(
        wish=Wish(product_id=row.product_id, wished_at=row.created_at),
        name=row.name,
        price=row.price,
        image_url=row.image_url,
        option_ids=tuple(row.option_ids or ()),
    )


__all__ = ["SqlWishList", "SqlWishes"]

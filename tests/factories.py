"""Rows other modules' tests need, written straight to the database (no HTTP round trip)."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert

from shop.adapters.db.tables import (
    CategoryRow,
    OptionRow,
    OrderLineRow,
    OrderRow,
    ProductCategoryRow,
    ProductRow,
)
from shop.bootstrap import Container
from tests.conftest import make_user as make_user  # one user factory for every module


async def make_product(container: Container, *, name: str = "T-shirt", price: int = 1_000) -> int:
    async with container.engine.begin() as conn:
        product_id = (
            await conn.execute(
                insert(ProductRow).values(name=name, price=price).returning(ProductRow.id)
            )
        ).scalar_one()
    return int(product_id)


async def make_option(
    container: Container,
    *,
    stock: int,
    price: int = 1_000,
    product_id: int | None = None,
    name: str | None = None,
) -> int:
    """An option with ``stock`` units put on sale through the active stock strategy."""
    product_id = product_id or await make_product(container, price=price)
    async with container.engine.begin() as conn:
        option_id = (
            await conn.execute(
                insert(OptionRow)
                .values(
                    product_id=product_id,
                    name=name or f"option-{uuid.uuid4().hex[:6]}",
                    price=price,
                    stock_total=0,
                    stock=0,
                )
                .returning(OptionRow.id)
            )
        ).scalar_one()
    if stock:
        await container.stock.put_on_sale(int(option_id), stock)
    return int(option_id)


async def make_category(
    container: Container, name: str = "Category", *, parent_id: int | None = None
) -> int:
    async with container.engine.begin() as conn:
        category_id = (
            await conn.execute(
                insert(CategoryRow).values(name=name, parent_id=parent_id).returning(CategoryRow.id)
            )
        ).scalar_one()
    return int(category_id)


async def make_listed_product(
    container: Container,
    *,
    category_ids: Sequence[int] = (),
    name: str = "Listed product",
    price: int = 1_000,
    created_at: datetime.datetime | None = None,
    popularity: int = 0,
) -> int:
    """A product in categories, with a chosen creation time and score (listing tests)."""
    values: dict[str, Any] = {"name": name, "price": price, "popularity": popularity}
    if created_at is not None:
        values["created_at"] = values["updated_at"] = created_at
    async with container.engine.begin() as conn:
        product_id = int(
            (
                await conn.execute(insert(ProductRow).values(**values).returning(ProductRow.id))
            ).scalar_one()
        )
        if category_ids:
            await conn.execute(
                insert(ProductCategoryRow),
                [{"product_id": product_id, "category_id": c} for c in category_ids],
            )
    return product_id


async def insert_order_rows(
    container: Container,
    *,
    status: str,
    lines: Sequence[tuple[int, int, int]],
    user_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """An order with ``lines`` of (option_id, product_id, quantity), written straight to the
    tables in a given status: for tests that read orders (popularity) without placing them."""
    if user_id is None:
        user_id, _ = await make_user(container)
    order_id = uuid.uuid4()
    async with container.engine.begin() as conn:
        await conn.execute(
            insert(OrderRow).values(
                id=order_id,
                user_id=user_id,
                status=status,
                payment_method="card",
                pay_by=datetime.datetime.now(datetime.UTC),
                total=0,
                shipping_address="1 Test Street",
                idempotency_key=order_id.hex,
                reservation_key=order_id.hex,
                request_fingerprint="test",
            )
        )
        await conn.execute(
            insert(OrderLineRow),
            [
                {
                    "order_id": order_id,
                    "option_id": option_id,
                    "product_id": product_id,
                    "quantity": quantity,
                    "unit_price": 0,
                }
                for option_id, product_id, quantity in lines
            ],
        )
    return order_id

"""Rows other modules' tests need, written straight to the database (no HTTP round trip)."""

from __future__ import annotations

import uuid

from sqlalchemy import insert

from shop.adapters.db.tables import OptionRow, ProductRow
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

"""Catalog rows to domain values: the table handles and mappers writes and reads share."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    Select,
    Table,
    select,
)

from shop.adapters.db.tables import (
    CategoryRow,
    OptionRow,
    OrderLineRow,
    ProductCategoryRow,
    ProductImageRow,
    ProductRow,
    StockBuyerTallyRow,
)
from shop.domain.catalog.model import (
    Category,
    Image,
    Option,
    ProductSummary,
)

category = cast("Table", CategoryRow.__table__)
product = cast("Table", ProductRow.__table__)
product_category = cast("Table", ProductCategoryRow.__table__)
option = cast("Table", OptionRow.__table__)
image = cast("Table", ProductImageRow.__table__)
order_line = cast("Table", OrderLineRow.__table__)
buyer_tally = cast("Table", StockBuyerTallyRow.__table__)


def category_of(row: Any) -> Category:
    return Category(id=row.id, name=row.name, parent_id=row.parent_id, position=row.position)


def option_of(row: Any) -> Option:
    return Option(
        id=row.id,
        product_id=row.product_id,
        name=row.name,
        price=row.price,
        stock_total=row.stock_total,
        position=row.position,
    )


def image_of(row: Any) -> Image:
    return Image(id=row.id, url=row.url, position=row.position)


def summary_of(row: Any) -> ProductSummary:
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

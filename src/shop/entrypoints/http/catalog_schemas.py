"""The catalog's HTTP bodies: msgspec structs in, msgspec structs out.

Input structs refuse unknown fields, so a misspelt ``category_id`` is a 422 instead of a
product silently registered in no category. Money is integer minor units throughout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shop.domain.catalog.model import (
    MAX_DESCRIPTION_LENGTH,
    MAX_IMAGES_PER_PRODUCT,
    MAX_NAME_LENGTH,
    MAX_OPTIONS_PER_PRODUCT,
    MAX_PRODUCT_NAME_LENGTH,
    MAX_URL_LENGTH,
    Category,
    CategoryChange,
    CategoryNode,
    Image,
    NewCategory,
    NewOption,
    NewProduct,
    OptionOnSale,
    ProductChange,
    ProductDetail,
    ProductSummary,
)
from shop.domain.limits import MAX_CATEGORIES_PER_PRODUCT
from shop.domain.stock.preconditions import MAX_UNITS_PER_CALL
from shop.entrypoints.http.bounds import NOT_BLANK, SPACE, Id, Position, Price

Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NOT_BLANK)]
ProductName = Annotated[
    str, Meta(min_length=1, max_length=MAX_PRODUCT_NAME_LENGTH, pattern=NOT_BLANK)
]
Url = Annotated[str, Meta(pattern=rf"^https?://[^\x00{SPACE}]+$", max_length=MAX_URL_LENGTH)]
Units = Annotated[int, Meta(ge=1, le=MAX_UNITS_PER_CALL)]
CategoryIds = Annotated[list[Id], Meta(max_length=MAX_CATEGORIES_PER_PRODUCT)]
Description = Annotated[str, Meta(max_length=MAX_DESCRIPTION_LENGTH)]


class CategoryIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    parent_id: Id | None = None
    position: Position = 0

    def to_domain(self) -> NewCategory:
        return NewCategory(name=self.name, parent_id=self.parent_id, position=self.position)


class CategoryPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Absent fields stay; ``"parent_id": null`` moves the category to the top level."""

    name: Name | UnsetType = UNSET
    parent_id: Id | UnsetType | None = UNSET
    position: Position | UnsetType = UNSET

    def to_domain(self) -> CategoryChange:
        return CategoryChange(
            name=None if isinstance(self.name, UnsetType) else self.name,
            position=None if isinstance(self.position, UnsetType) else self.position,
            move=not isinstance(self.parent_id, UnsetType),
            parent_id=None if isinstance(self.parent_id, UnsetType) else self.parent_id,
        )


class CategoryOut(msgspec.Struct):
    id: int
    name: str
    parent_id: int | None
    position: int

    @classmethod
    def from_domain(cls, category: Category) -> CategoryOut:
        return cls(
            id=category.id,
            name=category.name,
            parent_id=category.parent_id,
            position=category.position,
        )


class CategoryNodeOut(msgspec.Struct):
    id: int
    name: str
    position: int
    children: list[CategoryNodeOut]

    @classmethod
    def from_domain(cls, node: CategoryNode) -> CategoryNodeOut:
        """Built without recursion, like the domain's tree: depth is capped on write, but a
        chain already in the table must not exhaust the stack of whoever lists it."""
        out = cls(
            id=node.category.id,
            name=node.category.name,
            position=node.category.position,
            children=[],
        )
        stack = [(node, out)]
        while stack:
            current, rendered = stack.pop()
            for child in current.children:
                child_out = cls(
                    id=child.category.id,
                    name=child.category.name,
                    position=child.category.position,
                    children=[],
                )
                rendered.children.append(child_out)
                stack.append((child, child_out))
        return out


class CategoryRef(msgspec.Struct):
    id: int
    name: str


class OptionIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    stock: Annotated[int, Meta(ge=0, le=MAX_UNITS_PER_CALL)]
    price: Price | None = None

    def to_domain(self) -> NewOption:
        return NewOption(name=self.name, stock=self.stock, price=self.price)


class ProductIn(msgspec.Struct, forbid_unknown_fields=True):
    name: ProductName
    price: Price
    category_ids: CategoryIds
    options: Annotated[list[OptionIn], Meta(min_length=1, max_length=MAX_OPTIONS_PER_PRODUCT)]
    description: Description = ""
    images: Annotated[list[Url], Meta(max_length=MAX_IMAGES_PER_PRODUCT)] = msgspec.field(
        default_factory=list
    )

    def to_domain(self) -> NewProduct:
        return NewProduct(
            name=self.name,
            price=self.price,
            description=self.description,
            category_ids=tuple(self.category_ids),
            options=tuple(option.to_domain() for option in self.options),
            images=tuple(self.images),
        )


class ProductPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Absent fields stay; ``category_ids`` replaces the whole set."""

    name: ProductName | None = None
    description: Description | None = None
    price: Price | None = None
    category_ids: CategoryIds | None = None

    def to_domain(self) -> ProductChange:
        return ProductChange(
            name=self.name,
            description=self.description,
            price=self.price,
            category_ids=None if self.category_ids is None else tuple(self.category_ids),
        )


class RestockIn(msgspec.Struct, forbid_unknown_fields=True):
    units: Units


class ImageIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    position: Position | None = None


class OptionOut(msgspec.Struct):
    id: int
    name: str
    price: int
    stock_total: int
    available: int

    @classmethod
    def from_domain(cls, on_sale: OptionOnSale) -> OptionOut:
        option = on_sale.option
        return cls(
            id=option.id,
            name=option.name,
            price=option.price,
            stock_total=option.stock_total,
            available=on_sale.available,
        )


class ImageOut(msgspec.Struct):
    id: int
    url: str
    position: int

    @classmethod
    def from_domain(cls, image: Image) -> ImageOut:
        return cls(id=image.id, url=image.url, position=image.position)


class ProductOut(msgspec.Struct):
    id: int
    name: str
    description: str
    price: int
    popularity: int
    created_at: datetime
    updated_at: datetime
    categories: list[CategoryRef]
    options: list[OptionOut]
    images: list[ImageOut]

    @classmethod
    def from_domain(cls, detail: ProductDetail) -> ProductOut:
        product = detail.product
        return cls(
            id=product.id,
            name=product.name,
            description=product.description,
            price=product.price,
            popularity=product.popularity,
            created_at=product.created_at,
            updated_at=product.updated_at,
            categories=[CategoryRef(id=c.id, name=c.name) for c in product.categories],
            options=[
                OptionOut.from_domain(OptionOnSale(o, detail.available.get(o.id, 0)))
                for o in product.options
            ],
            images=[ImageOut.from_domain(image) for image in product.images],
        )


class ProductSummaryOut(msgspec.Struct):
    id: int
    name: str
    price: int
    popularity: int
    created_at: datetime
    image_url: str | None

    @classmethod
    def from_domain(cls, summary: ProductSummary) -> ProductSummaryOut:
        return cls(
            id=summary.id,
            name=summary.name,
            price=summary.price,
            popularity=summary.popularity,
            created_at=summary.created_at,
            image_url=summary.image_url,
        )


class ProductPage(msgspec.Struct):
    """``next_cursor`` is null on the last page; pass it back as ``cursor`` for the next."""

    items: list[ProductSummaryOut]
    next_cursor: str | None


class PopularProducts(msgspec.Struct):
    items: list[ProductSummaryOut]

"""Products as registered and shown: options (the unit that is bought), images, changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shop.domain.catalog.categories import Category
from shop.domain.catalog.checks import (
    MAX_IMAGES_PER_PRODUCT,
    MAX_NAME_LENGTH,
    MAX_OPTIONS_PER_PRODUCT,
    MAX_PRODUCT_NAME_LENGTH,
    check_category_links,
    check_description,
    check_name,
    check_price,
    check_url,
)
from shop.domain.errors import Conflict, InvalidInput
from shop.domain.stock.preconditions import MAX_UNITS_PER_CALL


@dataclass(frozen=True, slots=True)
class Option:
    """The unit that is bought. Its remaining stock belongs to the stock port, not to here."""

    id: int
    product_id: int
    name: str
    price: int
    stock_total: int
    position: int


@dataclass(frozen=True, slots=True)
class Image:
    id: int
    url: str
    position: int


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    name: str
    description: str
    price: int
    popularity: int
    created_at: datetime
    updated_at: datetime
    categories: tuple[Category, ...] = ()
    options: tuple[Option, ...] = ()
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True)
class ProductDetail:
    """A product as a customer sees it: with the units each option can still sell."""

    product: Product
    available: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class OptionOnSale:
    """An option with the units the stock port says can still be reserved."""

    option: Option
    available: int


@dataclass(frozen=True, slots=True)
class NewOption:
    name: str
    stock: int
    price: int | None = None  # None: the product's price

    def __post_init__(self) -> None:
        check_name(self.name, "option name", MAX_NAME_LENGTH)
        if self.price is not None:
            check_price(self.price)
        if not 0 <= self.stock <= MAX_UNITS_PER_CALL:
            raise InvalidInput(
                f"an option's initial stock must be between 0 and {MAX_UNITS_PER_CALL}",
                extra={"option": self.name, "stock": self.stock},
            )


@dataclass(frozen=True, slots=True)
class NewProduct:
    name: str
    price: int
    category_ids: tuple[int, ...]
    options: tuple[NewOption, ...]
    description: str = ""
    images: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "product name", MAX_PRODUCT_NAME_LENGTH)
        check_price(self.price)
        check_description(self.description)
        check_category_links(self.category_ids)
        if not self.options:
            raise InvalidInput("a product needs at least one option: options are what is sold")
        if len(self.options) > MAX_OPTIONS_PER_PRODUCT:
            raise InvalidInput(f"a product has at most {MAX_OPTIONS_PER_PRODUCT} options")
        names = [option.name for option in self.options]
        if len(set(names)) != len(names):
            # The same clash as adding an option under a name the product has: 409.
            raise Conflict("option names must differ within a product")
        if len(self.images) > MAX_IMAGES_PER_PRODUCT:
            raise InvalidInput(f"a product has at most {MAX_IMAGES_PER_PRODUCT} images")
        for url in self.images:
            check_url(url)

    def price_of(self, option: NewOption) -> int:
        return self.price if option.price is None else option.price


@dataclass(frozen=True, slots=True)
class ProductChange:
    """A partial update; ``None`` keeps the current value. ``category_ids`` replaces the set."""

    name: str | None = None
    description: str | None = None
    price: int | None = None
    category_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.name is not None:
            check_name(self.name, "product name", MAX_PRODUCT_NAME_LENGTH)
        if self.price is not None:
            check_price(self.price)
        if self.description is not None:
            check_description(self.description)
        if self.category_ids is not None:
            check_category_links(self.category_ids)


@dataclass(frozen=True, slots=True)
class CreatedProduct:
    """What registration wrote, so that stock can be put on sale once it is committed."""

    product_id: int
    option_stock: Sequence[tuple[int, int]] = field(default_factory=tuple)

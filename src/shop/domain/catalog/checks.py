"""The catalog's input limits and the checks every catalog value runs on itself."""

from __future__ import annotations

from collections.abc import Sequence

from shop.domain.errors import InvalidInput
from shop.domain.limits import MAX_CATEGORIES_PER_PRODUCT, MAX_INT32, MAX_PRICE

MAX_NAME_LENGTH = 200
MAX_PRODUCT_NAME_LENGTH = 300
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 20_000
MAX_OPTIONS_PER_PRODUCT = 100
MAX_IMAGES_PER_PRODUCT = 50


def check_name(value: str, what: str, maximum: int) -> None:
    if not value.strip():
        raise InvalidInput(f"{what} must not be blank")
    if len(value) > maximum:
        raise InvalidInput(f"{what} is longer than {maximum} characters")


def check_price(price: int) -> None:
    if price < 0:
        raise InvalidInput("a price cannot be negative (prices are integer minor units)")
    if price > MAX_PRICE:
        raise InvalidInput(f"a price is at most {MAX_PRICE} minor units", extra={"price": price})


def check_description(description: str) -> None:
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(f"a description is at most {MAX_DESCRIPTION_LENGTH} characters")


def check_category_links(category_ids: Sequence[int]) -> None:
    if len(category_ids) > MAX_CATEGORIES_PER_PRODUCT:
        raise InvalidInput(
            f"a product belongs to at most {MAX_CATEGORIES_PER_PRODUCT} categories",
            extra={"category_ids": len(category_ids)},
        )


def check_url(url: str) -> None:
    if not url.startswith(("https://", "http://")) or len(url) > MAX_URL_LENGTH or " " in url:
        raise InvalidInput(
            f"an image URL must be an http(s) URL of at most {MAX_URL_LENGTH} characters",
            extra={"url": url[:100]},
        )


def check_stock_total(current_total: int, units: int) -> None:
    """Every unit ever put on sale is counted in ``stock_total``, a 32-bit column: a restock
    that would carry it past that is refused before any store is touched."""
    if current_total + units > MAX_INT32:
        raise InvalidInput(
            f"an option holds at most {MAX_INT32} units in total over its life; "
            f"{current_total} are counted already",
            extra={"stock_total": current_total, "units": units, "max_stock_total": MAX_INT32},
        )

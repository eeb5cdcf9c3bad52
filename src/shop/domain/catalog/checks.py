"""The catalog's input limits and the checks every catalog value runs on itself."""

from __future__ import annotations

from shop.domain.errors import InvalidInput

MAX_NAME_LENGTH = 200
MAX_PRODUCT_NAME_LENGTH = 300
MAX_URL_LENGTH = 2048
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


def check_url(url: str) -> None:
    if not url.startswith(("https://", "http://")) or len(url) > MAX_URL_LENGTH or " " in url:
        raise InvalidInput(
            f"an image URL must be an http(s) URL of at most {MAX_URL_LENGTH} characters",
            extra={"url": url[:100]},
        )

"""A wish is a (customer, product) pair with the moment it was made; re-adding changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Wish:
    product_id: int
    wished_at: datetime


@dataclass(frozen=True, slots=True)
class WishedProduct:
    """A wish as the list stores it, with what is needed to summarise the product."""

    wish: Wish
    name: str
    price: int
    image_url: str | None
    option_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class WishEntry:
    """A wish as the customer sees it: ``available`` says whether any option can still be
    bought, straight from the stock port (the same answer the product page gives)."""

    wish: Wish
    name: str
    price: int
    image_url: str | None
    available: bool

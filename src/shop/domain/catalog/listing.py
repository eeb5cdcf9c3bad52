"""How products are listed: the card of a page, the sort orders, keyset positions, weights."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ProductSummary:
    """One row of a listing: enough to draw a product card."""

    id: int
    name: str
    price: int
    popularity: int
    created_at: datetime
    image_url: str | None


class Sort(StrEnum):
    NEWEST = "newest"
    POPULAR = "popular"


@dataclass(frozen=True, slots=True)
class NewestAfter:
    """Keyset position in the newest-first order: (created_at, id), both descending."""

    created_at: datetime
    id: int


@dataclass(frozen=True, slots=True)
class PopularAfter:
    """Keyset position in the most-popular-first order: (popularity, id), both descending."""

    popularity: int
    id: int


Position = NewestAfter | PopularAfter


@dataclass(frozen=True, slots=True)
class ListingQuery:
    sort: Sort
    limit: int
    category_id: int | None = None
    after: Position | None = None


@dataclass(frozen=True, slots=True)
class PopularityWeights:
    """score = units × units ordered in live orders + wish × wishes made within the window."""

    units: int = 2
    wish: int = 1
    wish_window_seconds: float = 7 * 24 * 3600

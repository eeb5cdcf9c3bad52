"""What an operator watches during a sale, as plain values.

``PurchaseOutcome`` names every way a purchase can end, so every adapter (Prometheus, logs,
a future one) counts the same categories. ``SaleSnapshot`` is the ledger's view of the
options on sale at one moment: the worker takes one every second or so, and both the
``/metrics`` gauges and the admin dashboard read it, so no scrape or page refresh ever
queries the ledger itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shop.domain.errors import (
    InvalidInput,
    MalformedRequest,
    NotFound,
    PurchaseLimitExceeded,
    SoldOut,
    Unavailable,
)
from shop.domain.stock.model import OptionStock


class PurchaseOutcome(StrEnum):
    """How one ``place_order`` call ended.

    ``invalid`` (a request the rules refused before reserving: unknown option, bad quantity,
    reused key) is kept apart from ``error`` so that the error rate only counts failures of
    the shop, never a client's mistakes.
    """

    CREATED = "created"
    REPLAYED = "replayed"
    SOLD_OUT = "sold_out"
    LIMIT = "limit"
    UNAVAILABLE = "unavailable"
    INVALID = "invalid"
    ERROR = "error"

    @classmethod
    def of_failure(cls, exc: BaseException) -> PurchaseOutcome:
        """The outcome a purchase that raised ``exc`` counts as."""
        if isinstance(exc, PurchaseLimitExceeded):
            return cls.LIMIT
        if isinstance(exc, SoldOut):
            return cls.SOLD_OUT
        if isinstance(exc, Unavailable):
            return cls.UNAVAILABLE
        if isinstance(exc, InvalidInput | MalformedRequest | NotFound):
            return cls.INVALID
        return cls.ERROR


@dataclass(frozen=True, slots=True)
class OptionFigures:
    """One option on sale, from the ledger. ``left`` is what should remain on sale;
    ``drift`` is how far the selling store is from it and ``oversold`` how many units were
    sold beyond ``on_sale``: both must read 0."""

    option_id: int
    on_sale: int
    sold: int
    held: int
    left: int
    drift: int
    oversold: int

    @classmethod
    def of(cls, stock: OptionStock) -> OptionFigures:
        store = stock.authoritative
        oversold = max(0, stock.sold - stock.stock_total) + max(0, -(store or 0))
        return cls(
            option_id=stock.option_id,
            on_sale=stock.stock_total,
            sold=stock.sold,
            held=stock.held,
            left=stock.expected,
            drift=stock.drift or 0,
            oversold=oversold,
        )


@dataclass(frozen=True, slots=True)
class DropFigures:
    """One drop (scheduled sale) as the dashboard and the ``shop_drop_*`` gauges show it.

    Filled by the ``DropsOnSale`` adapter (``adapters/drops_on_sale.py``); its drops'
    options join the options the snapshot follows. ``admitted`` is cumulative,
    ``admission_rate`` per second (the drop's setting). ``status`` is the drops module's
    own verdict (``Drop.status``: scheduled, live, sold_out) at the snapshot's time.
    """

    drop_id: int
    name: str
    starts_at: float
    ends_at: float | None
    option_ids: tuple[int, ...]
    queue_length: int = 0
    admitted: int = 0
    admission_rate: float = 0.0
    status: str = "scheduled"


@dataclass(frozen=True, slots=True)
class SaleSnapshot:
    """The options on sale at ``taken_at`` (epoch seconds), and the strategy selling them.
    ``lines_written`` only grows (order lines ever written): its growth between two
    snapshots is the purchase rate."""

    taken_at: float
    strategy: str
    options: tuple[OptionFigures, ...]
    drops: tuple[DropFigures, ...] = field(default=())
    lines_written: int | None = None

    @property
    def drift(self) -> int:
        return sum(abs(option.drift) for option in self.options)

    @property
    def oversold(self) -> int:
        return sum(option.oversold for option in self.options)

    @property
    def sold(self) -> int:
        return sum(option.sold for option in self.options)

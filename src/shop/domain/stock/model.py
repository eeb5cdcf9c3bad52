"""Value objects of the stock module: what is asked for, and what was set aside."""

from __future__ import annotations

import datetime
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from shop.domain.errors import InvalidInput
from shop.domain.stock.ledger import expected_left


@dataclass(frozen=True, slots=True, order=True)
class Line:
    """``quantity`` units of one option."""

    option_id: int
    quantity: int

    def __post_init__(self) -> None:
        if self.quantity < 1:
            raise InvalidInput(
                f"quantity must be at least 1 (option {self.option_id})",
                extra={"option_id": self.option_id, "quantity": self.quantity},
            )


def merge_lines(lines: Iterable[Line]) -> tuple[Line, ...]:
    """Add up lines naming the same option, in option-id order.

    Checking each line separately would let two lines of 3 pass on an option with 5 left;
    the sum is what must fit. Id order is also the order every adapter locks or updates in,
    so concurrent multi-line reservations cannot deadlock.
    """
    totals: dict[int, int] = {}
    for line in lines:
        totals[line.option_id] = totals.get(line.option_id, 0) + line.quantity
    if not totals:
        raise InvalidInput("a reservation needs at least one line")
    return tuple(Line(option_id, qty) for option_id, qty in sorted(totals.items()))


# How many units of an option one buyer may hold: one limit for every line, a limit per
# option (options it does not name are unlimited), or none. A drop limits its own options
# while the rest of an order follows the shop-wide limit, so the port takes it per line.
PerBuyerLimit = int | Mapping[int, int] | None


def limit_for(limit: PerBuyerLimit, option_id: int) -> int | None:
    """The per-buyer limit that applies to ``option_id`` (``None``: unlimited)."""
    if limit is None or isinstance(limit, int):
        return limit
    return limit.get(option_id)


@dataclass(frozen=True, slots=True)
class Reservation:
    """Units set aside under an idempotency key, until confirmed (sold) or released.

    ``generation`` is a fencing token: the id of the store state the units were taken from,
    for a store that can lose its state (the Redis counter), ``None`` for one that cannot.
    The order that will hold the reservation carries it to the ledger, which refuses the
    order if that state was lost meanwhile: the rebuild that followed the loss already put
    those units back on sale.
    """

    key: str
    lines: tuple[Line, ...]
    generation: str | None = None


class ReservationStatus(StrEnum):
    """Where a reservation is in its life, as the stores record it.

    ``pending`` (no order known yet) → ``confirmed`` (its order is written) → ``released``
    (units back on sale) or ``sold`` (its order shipped: it can no longer be released);
    ``moved`` while another store (the Redis counter) holds it.
    """

    PENDING = "pending"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    MOVED = "moved"
    SOLD = "sold"

    # Filled in below the class (an enum body cannot hold its own members in a set).
    # Still holding units in this store.
    OPEN: ClassVar[frozenset[ReservationStatus]]
    # Holding nothing here (given back, or held by another store): its key may reserve again.
    REUSABLE: ClassVar[frozenset[ReservationStatus]]

    @staticmethod
    def values(statuses: Collection[ReservationStatus]) -> list[str]:
        """The statuses' values in declaration order (stable SQL text and bind parameters)."""
        return [status.value for status in ReservationStatus if status in statuses]


ReservationStatus.OPEN = frozenset({ReservationStatus.PENDING, ReservationStatus.CONFIRMED})
ReservationStatus.REUSABLE = frozenset({ReservationStatus.RELEASED, ReservationStatus.MOVED})


@dataclass(frozen=True, slots=True)
class HeldReservation:
    """A reservation still holding units: ``pending`` (no order known yet) or ``confirmed``.

    ``buyer`` is whom the per-buyer limit counts it against (``None`` when the caller named
    nobody); ``created_at`` is seconds since the epoch, by the clock of the store that holds it.
    """

    key: str
    lines: tuple[Line, ...]
    status: str
    buyer: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class OptionStock:
    """One option as an operator sees it: what each store says against what the ledger says.

    ``expected`` is the ledger's remaining (``ledger.expected_left``), where ``sold`` counts
    the lines of live orders and ``held`` the units of reservations no live order accounts for
    yet. ``authoritative`` is the store the active strategy sells from (the Redis counter for
    ``counter``, ``option.stock`` otherwise); ``drift`` is how far it is from the ledger.
    """

    option_id: int
    stock_total: int
    sold: int
    held: int
    db_stock: int
    authoritative: int | None
    # What each store keeps besides ``option.stock``, by name (the Redis counter); empty
    # for the strategies that keep nothing else. Names come from the stores, not from here.
    figures: Mapping[str, int | None] = field(default_factory=dict)

    @property
    def expected(self) -> int:
        return expected_left(self.stock_total, sold=self.sold, held=self.held)

    @property
    def drift(self) -> int | None:
        return None if self.authoritative is None else self.authoritative - self.expected


@dataclass(frozen=True, slots=True)
class RebuiltOption:
    """One option a rebuild or repair changed: what the store said, what it holds now."""

    option_id: int
    before: int | None
    after: int

    @property
    def drift(self) -> int | None:
        """How far the store was off the ledger (positive: it would have sold units that
        were no longer there; negative: units were lost to it)."""
        return None if self.before is None else self.before - self.after


@dataclass(frozen=True, slots=True)
class StockRebuild:
    """The last time a store's remaining stock was reset from the ledger.

    A reset from the ledger is right by construction, and would hide whatever went wrong
    before it; this keeps what it found. ``before`` is what ``source`` said: the store
    itself for a repair; after a full loss of the counters, PostgreSQL's mirror
    ``option.stock`` (at most one sync interval behind, so a difference there is either
    drift or sales the sync had not copied yet).
    """

    at: datetime.datetime
    strategy: str
    cause: str
    source: str
    options: int
    changed: tuple[RebuiltOption, ...]


@dataclass(slots=True)
class SweepOutcome:
    """What one sweep did; the job logs it."""

    confirmed: list[str]
    released: list[str]
    retired: list[str]

"""Value objects of the stock module: what is asked for, and what was set aside."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shop.domain.errors import InvalidInput


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


@dataclass(frozen=True, slots=True)
class Reservation:
    """Units set aside under an idempotency key, until confirmed (sold) or released."""

    key: str
    lines: tuple[Line, ...]

    def quantity_of(self, option_id: int) -> int:
        return sum(line.quantity for line in self.lines if line.option_id == option_id)

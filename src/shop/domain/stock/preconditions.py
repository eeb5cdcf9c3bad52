"""The stock port's preconditions: what every strategy refuses before it touches a store.

Written once here so that ``db``, ``redlock``, ``counter`` and any later strategy refuse the
same input with the same message; an adapter calls them first thing.
"""

from __future__ import annotations

from shop.domain.errors import InvalidInput
from shop.domain.stock.model import PerBuyerLimit

# A single restock or initial stock; keeps ``stock_total`` (a 32-bit column) far from overflow.
MAX_UNITS_PER_CALL = 1_000_000


def check_limit_arguments(buyer: str | None, per_buyer_limit: PerBuyerLimit) -> None:
    """A per-buyer limit counts units against someone: it needs a buyer, and a limit of at
    least one unit (a limit of zero would be a sold-out that no restock can lift). Given per
    option (a drop's options), every limit named must be at least one."""
    if per_buyer_limit is None:
        return
    limits = (
        [per_buyer_limit] if isinstance(per_buyer_limit, int) else list(per_buyer_limit.values())
    )
    if limits and (buyer is None or min(limits) < 1):
        raise InvalidInput("a per-buyer limit needs a buyer and a limit of at least 1")


def check_units(units: object) -> None:
    """``put_on_sale`` only adds: a positive whole number of units."""
    if not isinstance(units, int) or units < 1:
        raise InvalidInput("put_on_sale needs a positive number of units")


def check_units_per_call(units: int) -> None:
    """A restock an operator asks for: at least one unit, at most ``MAX_UNITS_PER_CALL``."""
    if not 1 <= units <= MAX_UNITS_PER_CALL:
        raise InvalidInput(
            f"units must be between 1 and {MAX_UNITS_PER_CALL}", extra={"units": units}
        )

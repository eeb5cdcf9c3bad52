"""The stock port (DESIGN §3): who gets the last unit.

Every adapter keeps these invariants, and one contract suite runs against each of them:
- no oversell: units sold never exceed units put on sale, under any concurrency;
- conservation: ``stock_total = remaining + units of live order lines`` once reservations settle;
- recoverable: counters lost with Redis are rebuilt from PostgreSQL without overselling;
- switchable: changing strategy while buyers buy neither oversells nor loses units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from shop.domain.stock.model import Line, Reservation


class StockReservation(Protocol):
    """Decides who gets the last unit. Every adapter must refuse rather than oversell."""

    name: str

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: int | None = None,
    ) -> Reservation:
        """Set aside all lines or none. Raises ``SoldOut(option_id)`` for the first short option
        (``Unavailable`` when it cannot decide in time). Idempotent per key: a retry with the
        same key returns the original reservation and takes nothing more.

        With ``per_buyer_limit``, also raises ``PurchaseLimitExceeded(option_id)`` when the
        units ``buyer`` already holds of an option (pending and confirmed reservations) plus
        this request would exceed the limit; decided atomically with the decrement, so
        concurrent requests of one buyer cannot both slip under it."""
        ...

    async def confirm(self, key: str) -> None:
        """The order holding this reservation is persisted: the units are sold. Idempotent.
        Raises ``ReservationLost`` if the reservation is no longer held (released, e.g. swept
        as abandoned, or never made): the order must not stand on units it does not hold."""
        ...

    async def release(self, key: str) -> None:
        """Give the units back (cancel, expiry, failed order write). Idempotent: twice returns
        the units once. Releasing an unknown key is a no-op."""
        ...

    async def put_on_sale(self, option_id: int, units: int) -> None:
        """Registration and restock: ``units`` more can be sold from now on."""
        ...

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        """Units that can still be reserved, per option (0 for unknown options)."""
        ...

"""The stock port: who gets the last unit.

Every adapter keeps these invariants, and one contract suite runs against each of them:
- no oversell: units sold never exceed units put on sale, under any concurrency;
- conservation: ``stock_total = remaining + units of live order lines`` once reservations settle;
- recoverable: counters lost with Redis are rebuilt from PostgreSQL without overselling;
- switchable: changing strategy while buyers buy neither oversells nor loses units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from shop.domain.stock.model import (
    HeldReservation,
    Line,
    OptionStock,
    PerBuyerLimit,
    Reservation,
    StockRebuild,
)


class StockReservation(Protocol):
    """Decides who gets the last unit. Every adapter must refuse rather than oversell."""

    @property
    def name(self) -> str:
        """The strategy selling now (``counter``, ``redlock``, ``db``…)."""
        ...

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        """Set aside all lines or none. Raises ``SoldOut(option_id)`` for the first short option
        (``Unavailable`` when it cannot decide in time). Idempotent per key: a retry with the
        same key returns the original reservation and takes nothing more; a key whose
        reservation was released may reserve again (a purchase retried after a failed write).

        ``buyer`` names whom the units count against: pass ``str(user_id)`` of the order's
        owner, the identity the ledger recovers from ``purchase_order.user_id`` after a loss.
        With ``per_buyer_limit``, the buyer's units of an option held by unreleased
        reservations may not exceed it: ``PurchaseLimitExceeded`` otherwise, decided
        atomically with the reservation. A release gives the allowance back. The limit may be
        given per option (a mapping; options it does not name are unlimited): a drop's
        options carry the drop's limit while the rest of the order keeps the shop's."""
        ...

    async def confirm(self, key: str) -> None:
        """The order holding this reservation is persisted: the units are sold. Idempotent."""
        ...

    async def release(self, key: str) -> None:
        """Give the units back (cancel, expiry, failed order write). Idempotent: twice returns
        the units once. Releasing an unknown key is a no-op."""
        ...

    async def put_on_sale(self, option_id: int, units: int, *, key: str | None = None) -> None:
        """Registration and restock: ``units`` more can be sold from now on.

        With ``key``, idempotent: a retry with the same key, option and units puts nothing
        more on sale, in every store the strategy keeps (the ledger's ``stock_total`` and,
        for a strategy with counters elsewhere, the counter), even when the first attempt
        failed between the two; the same key with another option or units is refused
        (``InvalidInput``). Without a key every call adds ``units``."""
        ...

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        """Units that can still be reserved, per option (0 for unknown options)."""
        ...


class OrderStates(Protocol):
    """What became of the orders holding reservations (the orders module's table, read-only)."""

    async def states_of(self, keys: Sequence[str]) -> Mapping[str, str]:
        """Order status per reservation key; keys whose order was never written are absent."""
        ...

    async def abandon(self, key: str) -> bool:
        """Decide, atomically with any order insert racing it, that no order will ever hold
        this reservation; ``True`` if so, ``False`` if an order already holds it. Reading the
        states and then releasing would free the units of an order written in between."""
        ...


class StockOperations(Protocol):
    """What operators and background jobs do to the stock, whichever strategy serves."""

    async def active_strategy(self) -> str:
        """The strategy every process of the deployment sells with right now."""
        ...

    async def use(self, name: str) -> str:
        """Switch the running deployment to ``name``; returns the strategy it replaced.
        Purchases racing the switch wait (or get ``Unavailable``); none oversells or loses."""
        ...

    async def status(self, option_ids: Sequence[int] | None = None) -> Sequence[OptionStock]:
        """Every option (or those named): the stores against the ledger."""
        ...

    async def repair(self) -> Sequence[OptionStock]:
        """Set what is left of every drifting option to what the ledger says; returns them as
        they were. Runs behind the switch fence, so no purchase interleaves."""
        ...

    async def last_rebuild(self) -> StockRebuild | None:
        """What the last rebuild from the ledger (a recovery or a repair) found and changed."""
        ...

    async def sync(self) -> int:
        """Write Redis counters back to ``option.stock``; returns how many rows changed."""
        ...

    async def open_reservations(self) -> Sequence[HeldReservation]:
        """Every reservation that still holds units, in the active strategy's store."""
        ...

    async def retire(self, keys: Sequence[str]) -> None:
        """Stop tracking confirmed reservations that can no longer be released (their order
        shipped): the units stay sold, the stores stay small."""
        ...

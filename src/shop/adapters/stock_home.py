"""The contract a stock strategy signs: the port, plus a home that the switch can move.

``StockReservation`` (``domain/stock/ports.py``) is what the rest of the shop sees. The live
switch (``adapters/redis/strategy.py``), the sweep and ``shop stock status`` also need to reach
the store behind a strategy: that is its ``StockHome``. Neither protocol names Redis or
PostgreSQL, so a new strategy implements them in its own module and is registered with one
line in ``bootstrap.STOCK_STRATEGIES``; nothing else changes.

**The fence rule.** Every operation that writes stock state (``reserve``, ``confirm``,
``release``, ``put_on_sale``, and a home's ``sync``/``retire``) checks that its strategy is
still the active one *atomically with its first write*, and raises ``StrategyMoved`` before
writing anything when it is not. A PostgreSQL-backed strategy gets this by taking the fence
shared in the same transaction (``stock_fence.share_fence`` or ``FENCE_SQL`` folded into its
first statement); a store outside PostgreSQL checks a copy of the active name atomically
with the write (the counter's Lua scripts check ``active``). ``SwitchableStock`` catches
``StrategyMoved`` and retries with the strategy that replaced it, so a process that has not
yet noticed a switch is refused, never half-applied.

A strategy whose state lives outside PostgreSQL and can be lost must also hand out a
``Reservation.generation`` and record a lost one (``reservation_claims.mark_generation_lost``)
with the fence held exclusively before it rebuilds; see ``stock_counter_recovery.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from shop.adapters.db.stock_state import StockState
from shop.domain.stock.model import HeldReservation
from shop.domain.stock.ports import StockReservation


class StockHome(Protocol):
    """Where a strategy keeps its state: what is left per option, the reservations holding
    units, and the per-buyer tallies (together a ``StockState``).

    Strategies whose homes share a ``name`` share that state, so switching between them only
    changes the active name (``db`` and ``redlock`` share ``PostgresHome``). The switch calls
    the members in this order: ``prepare``; then, inside one PostgreSQL transaction holding the
    fence exclusively, ``export_state`` and ``vacate`` on the old home, ``import_state`` and
    ``intact`` on the new one; after the commit ``after_vacate`` on the old home (or, when the
    transaction rolled back, on the new one, to drop a half-import).
    """

    @property
    def name(self) -> str:
        """The store's identity; equal names mean one shared state."""
        ...

    async def prepare(self) -> None:
        """Before the state moves out or is repaired: make sure the store holds all of it
        (recover what it lost). Raises ``StrategyMoved`` if its strategy stopped selling."""
        ...

    async def export_state(self, conn: AsyncConnection) -> StockState:
        """The whole state, read while the switch holds it still (nothing sells, the fence is
        held exclusively on ``conn``). Raises ``StateLost`` rather than return a partial
        state."""
        ...

    async def import_state(self, conn: AsyncConnection, state: StockState) -> None:
        """Replace the store's state with ``state``. Writes outside ``conn`` must stay
        invisible to sales until the switch commits (stage them, publish them last)."""
        ...

    async def vacate(self, conn: AsyncConnection) -> None:
        """Inside the switch's transaction: the store holds nothing from now on."""
        ...

    async def after_vacate(self) -> None:
        """After the transaction: clean what the store kept outside PostgreSQL. Also the undo
        of a rolled-back import, so it must be safe to run on a store that holds nothing."""
        ...

    async def intact(self, conn: AsyncConnection) -> bool:
        """Does the store still hold what was committed or imported? ``False`` makes the
        switch roll back (before its commit) or recover at once (after it)."""
        ...

    async def open_reservations(self) -> list[HeldReservation]:
        """The reservations still holding units here, for the sweep and ``status``."""
        ...

    async def retire(self, keys: Sequence[str]) -> None:
        """Forget settled reservations (their orders are final); units do not move."""
        ...

    async def remaining(self, option_ids: Sequence[int]) -> Mapping[int, int | None]:
        """What the strategy sells from, per option (``None`` where the store has no entry):
        the figure ``status`` and ``repair`` hold against the ledger."""
        ...

    async def figures(self, option_ids: Sequence[int]) -> Mapping[int, Mapping[str, int | None]]:
        """Named per-option figures this store adds to ``shop stock status`` (the counter
        home reports ``redis counter``); ``{}`` when it keeps none beyond ``option.stock``.
        Reported for every home, active or not, so leftovers of a previous store show."""
        ...

    async def sync(self) -> int:
        """Copy what is left to PostgreSQL's mirror ``option.stock``, fenced like a write;
        returns how many options it wrote (``0`` when ``option.stock`` is the state)."""
        ...


class StockStrategy(StockReservation, Protocol):
    """A registered strategy: the port (keeping the fence rule above), plus its home."""

    @property
    def home(self) -> StockHome:
        """Where this strategy's state lives."""
        ...

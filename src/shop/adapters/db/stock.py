"""The ``db`` stock strategy: PostgreSQL alone decides who gets the last unit.

A conditional ``UPDATE option SET stock = stock - n WHERE id = :id AND stock >= n`` per line,
in option-id order, inside one transaction that also records the reservation and counts it
against its buyer: one call of the SQL function ``shop_reserve_stock`` (migration 0008), so a
reservation is one round trip and a hot row is locked only for the server's own time between
its decrement and the commit, never across a network round trip. The row lock
taken by the UPDATE serialises buyers of one option; the ``stock >= n`` predicate is
re-checked on the locked row (READ COMMITTED re-evaluates it after waiting), so no schedule of
concurrent buyers can take more than there is. Lines in id order mean two multi-line orders
lock rows in the same order and cannot deadlock. The reservation row (primary key = the
idempotency key) makes a retried reserve return the first result instead of taking units
twice, and lets the sweep find reservations whose order was never written.

This is the baseline a user without Redis picks, and the fencing guard the Redlock strategy
relies on (it runs the same statements under its lock). Every operation first holds the
switch fence shared (``stock_fence``), so a live switch never interleaves with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from shop.adapters.coalescing import Coalescer
from shop.adapters.db.stock_fence import share_fence
from shop.adapters.db.stock_reserve import ReservationAsk, reserve_in
from shop.adapters.db.stock_restock import record_restock
from shop.adapters.db.stock_rows import (
    Raw,
    active_strategy,
    add_to_total,
    confirm_all_in,
    confirm_in,
    db_stock,
    raw_connection,
    release_in,
    strategy_moved,
)
from shop.adapters.db.stock_state import PostgresHome
from shop.domain.stock.model import Line, PerBuyerLimit, Reservation, merge_lines
from shop.domain.stock.preconditions import check_limit_arguments, check_units


class PostgresStock:
    """``SHOP_STOCK_STRATEGY=db``: conditional UPDATEs in PostgreSQL, no Redis involved."""

    name = "db"

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 128) -> None:
        self._engine = engine
        # The purchase path's statements run on the asyncpg driver (see stock_rows); the
        # confirmation is one statement (the fence folded in), with no BEGIN/COMMIT around it.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # Group commit of the confirmations (see ``Coalescer``): at saturation a pool
        # checkout and a round trip per purchase cost more CPU than the row they write.
        self._confirms: Coalescer[str, None] = Coalescer(self._confirm_batch, max_batch=max_batch)
        self.home = PostgresHome(engine)

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        check_limit_arguments(buyer, per_buyer_limit)
        merged = merge_lines(lines)
        ask = ReservationAsk(key, merged, buyer, per_buyer_limit)
        async with raw_connection(self._autocommit) as raw:
            return await reserve_in(raw, ask, strategy=self.name)

    async def confirm(self, key: str) -> None:
        await self._confirms.submit(key)

    async def _confirm_batch(self, keys: list[str]) -> list[BaseException | None]:
        """A lone confirmation keeps its single statement; a batch goes as one statement,
        and each caller gets the answer (``StrategyMoved``, ``ReservationLost`` or none) its
        own statement gave. A failure of the batch statement itself is every caller's: it
        confirmed all or none, and confirming is idempotent, so each may retry.

        For the keys the batch did not confirm, the active strategy is read once, at once:
        moved, and each of them gets ``StrategyMoved`` as ``confirm_in`` would answer it.
        Asking ``confirm_in`` key by key instead spreads those reads over a loop long enough
        for a switch back to land in it, after which a key whose ``_CONFIRM`` the fence
        refused reads as active and still pending: ``ReservationLost`` for a reservation
        that holds its units (the switch race test caught it). Still active, and each goes
        through ``confirm_in`` on its own (already confirmed, released, moved, unknown)."""
        async with raw_connection(self._autocommit) as raw:
            if len(keys) == 1:
                return [await self._confirm_one(raw, keys[0])]
            confirmed = await confirm_all_in(raw, keys, strategy=self.name)
            if not confirmed.issuperset(keys):
                active = await active_strategy(raw)
                if active != self.name:
                    return [
                        None if key in confirmed else strategy_moved(active, self.name)
                        for key in keys
                    ]
            return [None if key in confirmed else await self._confirm_one(raw, key) for key in keys]

    async def _confirm_one(self, raw: Raw, key: str) -> BaseException | None:
        try:
            await confirm_in(raw, key, strategy=self.name)
        except Exception as exc:
            return exc
        return None

    async def release(self, key: str) -> None:
        async with self._engine.begin() as conn:
            await release_in(conn, key, strategy=self.name)

    async def put_on_sale(self, option_id: int, units: int, *, key: str | None = None) -> None:
        """``option.stock`` is this strategy's only store, so recording the key in the
        transaction that raises it is the whole of idempotency."""
        check_units(units)
        async with self._engine.begin() as conn:
            await share_fence(conn, self.name)
            if key is not None and await record_restock(conn, key, option_id, units) is not None:
                return  # a retry: the ledger holds these units already
            await add_to_total(conn, option_id, units)

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        async with self._engine.connect() as conn:
            return await db_stock(conn, option_ids)

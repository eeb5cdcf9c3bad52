"""Recovery of the counter strategy: rebuilding Redis's state from the PostgreSQL ledger.

If Redis loses its data (an empty restart, a FLUSHDB), the generation key is gone and every
script answers ``nogen``. One process (Redis ``SET NX`` lock, then the PostgreSQL fence held
exclusively) rebuilds the whole state from the ledger: counters = ``stock_total - live order
lines``, and the reservations of orders that may still be cancelled (so a later release
finds them). Reservations made before the loss whose order is still being written are
unknowable after it, so when a counter generation existed the rebuild first waits
``SHOP_STOCK_RECOVERY_GRACE`` seconds for those orders to land; it then reads the ledger in
one snapshot. Buyers wait (then get ``Unavailable``) meanwhile: a refused sale can be
retried, an oversold one cannot. A single counter key that is missing while the generation
exists (a new option, a manual DEL) is rebuilt alone: ``stock_total`` − the units the
option's remaining reservations hold − live order lines outside them. The install is a
``SET NX``, so two rebuilders can never add up. A full rebuild installs through the home's
staged ``import_state`` (a loss midway publishes nothing; the rebuild runs again) and
records what it changed against PostgreSQL's mirror ``option.stock`` (``stock_rebuilds``).

Its own module because it is the part of the strategy whose correctness argument is the
longest (the generation fence, the grace period, the single-counter arithmetic): it can be
reviewed here alone, against ``stock_ledger`` which it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import uuid
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.adapters.db.reservation_claims import mark_generation_lost, void_moved_reservations
from shop.adapters.db.stock_fence import (
    COUNTER_GENERATION_SETTING,
    STRATEGY_SETTING,
    StrategyMoved,
    fence_across_commits,
    read_setting,
)
from shop.adapters.db.stock_ledger import (
    buyer_units,
    ledger_snapshot,
    option_ledger,
    releasable_orders,
    sold_outside,
)
from shop.adapters.db.stock_rebuilds import record_rebuild
from shop.adapters.db.stock_state import StateLost, StockState
from shop.adapters.redis import stock_counter_scripts as lua
from shop.adapters.redis.stock_counter_records import as_text, hgetall
from shop.adapters.redis.stock_keys import (
    COUNTER,
    GENERATION,
    OPTIONS,
    REBUILD_LOCK,
    held_key,
    left_key,
)
from shop.domain.errors import SoldOut, Unavailable
from shop.domain.stock.ledger import expected_left
from shop.domain.stock.model import RebuiltOption, StockRebuild
from shop.logs import get_logger

_log = get_logger("shop.stock.counter")
_POLL = 0.02


class StateImport(Protocol):
    """Where a full rebuild installs the state: the counter home's staged import."""

    async def import_state(self, conn: AsyncConnection, state: StockState) -> None: ...


class CounterRecovery:
    """Puts the counter state back in Redis after a loss, whole or one counter at a time."""

    def __init__(
        self, engine: AsyncEngine, redis: Redis, home: StateImport, *, grace: float
    ) -> None:
        self._engine = engine
        self._redis = redis
        self._home = home
        self._grace = grace
        self._install = redis.register_script(lua.INSTALL)
        self._restoring = asyncio.Lock()
        self._rebuild: asyncio.Task[None] | None = None
        self._rebuilding: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def recover(self, kind: str, outcome: Sequence[Any], deadline: float) -> None:
        """Act on a script's answer that is not a sale's outcome, then let the caller retry."""
        if kind == "moved":
            raise StrategyMoved("stock strategy is no longer counter")
        if time.monotonic() > deadline:
            raise Unavailable("stock is being recovered; please retry shortly")
        if kind == "nogen":
            await self.restore(deadline)
        elif kind == "missing":
            await self.restore_counter(int(outcome[1]))
        else:
            raise RuntimeError(f"unexpected answer from a stock script: {kind!r}")

    async def restore(self, deadline: float | None = None) -> None:
        """Make sure Redis holds the whole counter state, rebuilding it if it was lost.

        The rebuild runs as a task of its own (it may wait out the grace period); callers
        wait for it until their deadline, then get ``Unavailable``. One task per process
        watches; the others queue behind it instead of polling Redis too.
        """
        give_up = deadline if deadline is not None else time.monotonic() + self._grace + 60
        try:
            async with asyncio.timeout(max(give_up - time.monotonic(), 0)):
                await self._restoring.acquire()
        except TimeoutError:
            raise Unavailable("stock is being recovered; please retry shortly") from None
        try:
            while not await self._redis.exists(GENERATION):
                task = self._rebuild
                if task is not None and task.done():
                    self._rebuild = None
                    failure = None if task.cancelled() else task.exception()
                    if isinstance(failure, StateLost):
                        # Redis lost the rebuild's own writes: nothing was published, and
                        # the next turn of the loop rebuilds again.
                        _log.warning("counter rebuild lost to Redis; rebuilding again")
                    elif failure is not None:
                        raise failure
                    continue
                if task is None:
                    token = uuid.uuid4().hex
                    if await self._redis.set(
                        REBUILD_LOCK, token, nx=True, px=int((self._grace + 30) * 1000)
                    ):
                        task = self._rebuild = asyncio.create_task(self._rebuild_holding(token))
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    raise Unavailable("stock is being recovered; please retry shortly")
                if task is not None:
                    await asyncio.wait([task], timeout=remaining)
                else:
                    await asyncio.sleep(min(_POLL, remaining))
        finally:
            self._restoring.release()

    async def close(self) -> None:
        """Stop a rebuild still running (its lock expires; another process takes over)."""
        if self._rebuild is not None and not self._rebuild.done():
            self._rebuild.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebuild

    async def _rebuild_holding(self, token: str) -> None:
        try:
            await self._rebuild_all()
        finally:
            if await self._redis.get(REBUILD_LOCK) == token.encode():
                await self._redis.delete(REBUILD_LOCK)

    async def _rebuild_all(self) -> None:
        """Rebuild the whole state from the ledger after Redis lost it.

        Orders whose reservation came from the lost state are fenced by its generation (see
        ``Reservation.generation``): the lost generation is recorded with the fence held
        exclusively, so each such order insert either committed before the ledger is read
        (and is counted as sold) or is refused afterwards (its units were counted unsold).
        The grace period, spent before taking the fence, only lets in-flight purchases land
        instead of being refused; correctness does not depend on it.
        """
        async with self._engine.connect() as conn:
            lost = await read_setting(conn, COUNTER_GENERATION_SETTING)
        if lost is not None and self._grace > 0 and not await self._redis.exists(GENERATION):
            _log.warning("counter state lost; waiting for in-flight orders", grace=self._grace)
            await asyncio.sleep(self._grace)
        async with self._engine.connect() as conn, fence_across_commits(conn):
            async with conn.begin():
                if await read_setting(conn, STRATEGY_SETTING) != COUNTER:
                    raise StrategyMoved("stock strategy is no longer counter")
                if await self._redis.exists(GENERATION):
                    return
                previous = await read_setting(conn, COUNTER_GENERATION_SETTING)
                if previous is not None:
                    await mark_generation_lost(conn, previous)
                    await void_moved_reservations(conn)
            async with ledger_snapshot(self._engine) as view:
                entries = await option_ledger(view)
                state = StockState(
                    remaining={
                        option_id: max(entry.unsold, 0) for option_id, entry in entries.items()
                    },
                    held=await releasable_orders(view),
                    tallies=await buyer_units(view),
                )
            overdrawn = [option_id for option_id, e in entries.items() if e.unsold < 0]
            if overdrawn:
                _log.error("ledger shows more sold than put on sale", options=overdrawn)
            # The counters are gone; what PostgreSQL's mirror said is the best "before" left.
            rebuild = StockRebuild(
                at=datetime.datetime.now(datetime.UTC),
                strategy=COUNTER,
                cause=(
                    "Redis lost the counter state"
                    if previous is not None
                    else "no counter state in Redis yet"
                ),
                source="option.stock (PostgreSQL's mirror, up to one sync interval behind)",
                options=len(entries),
                changed=tuple(
                    RebuiltOption(option_id, before=entry.stock, after=state.remaining[option_id])
                    for option_id, entry in entries.items()
                    if entry.stock != state.remaining[option_id]
                ),
            )
            async with conn.begin():
                await self._home.import_state(conn, state)
                await record_rebuild(conn, rebuild)
            _log.warning(
                "counter state rebuilt from PostgreSQL",
                options=len(state.remaining),
                changed=len(rebuild.changed),
            )

    async def restore_counter(self, option_id: int) -> None:
        """Rebuild one missing counter with the fence held (one rebuilder per option here)."""
        lock = self._rebuilding.setdefault(option_id, asyncio.Lock())
        async with lock:
            if await self._redis.exists(left_key(option_id)):
                return
            async with self._engine.connect() as conn, fence_across_commits(conn):
                async with conn.begin():
                    if await read_setting(conn, STRATEGY_SETTING) != COUNTER:
                        raise StrategyMoved("stock strategy is no longer counter")
                await self.install_counter(option_id)

    async def install_counter(self, option_id: int) -> None:
        """Rebuild one counter; the caller holds the fence exclusively. An option that does
        not exist has nothing to sell: ``SoldOut``, as the other strategies say."""
        if not await self._redis.exists(GENERATION):
            return
        held = {
            as_text(key): int(units)
            for key, units in (await hgetall(self._redis, held_key(option_id))).items()
        }
        async with ledger_snapshot(self._engine) as view:
            entry = (await option_ledger(view, [option_id])).get(option_id)
            if entry is None:
                raise SoldOut(option_id)
            outside = await sold_outside(view, option_id, sorted(held))
        left = expected_left(entry.stock_total, sold=outside, held=sum(held.values()))
        if left < 0:
            _log.error("ledger shows more sold than put on sale", option_id=option_id, left=left)
            left = 0
        await self._install(keys=[GENERATION, left_key(option_id), OPTIONS], args=[left, option_id])

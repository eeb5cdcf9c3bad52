"""The live strategy switch: every process sells with the deployment's active strategy.

Design — a fence, not a broadcast:

- The truth is ``app_setting['stock_strategy']`` in PostgreSQL; Redis holds a copy
  (``active``) that the counter scripts check atomically with every sale.
- Each process wraps every registered strategy in one ``SwitchableStock`` (the container's
  stock port). It re-reads ``active`` at most every half second, and at once whenever an
  adapter reports ``StrategyMoved``, so it follows a switch within a second, without restart.
  Correctness never rests on that cache: each operation re-checks the active strategy
  atomically with what it does — inside the Lua script for ``counter``, after taking the
  PostgreSQL fence shared, in the same transaction, for ``db`` and ``redlock``. A process
  that has not noticed the switch yet is refused before it writes anything, and retries
  with the new strategy.
- ``use(name)``: (1) take the switch lock in Redis (one switch at a time, extended while it
  works); (2) make sure the current store holds all of its state (the counter recovers from
  PostgreSQL if Redis lost it); (3) set ``active`` to ``switching``: counter scripts refuse
  from now on; (4) take the PostgreSQL fence exclusively: in-flight transactions of the
  PostgreSQL strategies and counter restocks/syncs finish, new ones queue; (5) if the two
  strategies keep their state in different stores, export it from the old one (what is left
  per option, the reservations still holding units, the per-buyer tallies), import it into
  the new one, mark the old one vacated, and store the new name — one PostgreSQL transaction;
  (6) set ``active`` to the new name; clean the old store. ``db`` ↔ ``redlock`` share their
  store, so only the name changes.
- Redis failing under a switch: the export reads each chunk atomically with the generation
  and ``active``, the import is staged and published only if its marker survived, and just
  before committing the switch checks atomically that it still holds its lock and that
  ``active`` still says ``switching`` (the keeper logs failed extensions and records a lost
  lock). Any of these failing raises ``StateLost``: the transaction rolls back, whatever was
  half-imported is cleared while the fence is still held, and ``use`` answers ``Conflict``
  (nothing switched, run it again). After the commit the switch checks the new store once
  more; if Redis lost it in that instant, it logs an error and recovers it at once (the
  counter rebuilds from the ledger, and the rebuild is reported).
- Purchases arriving during the switch wait (polling) up to ``SHOP_STOCK_WAIT`` seconds and
  then get ``Unavailable`` (503, Retry-After). Every unit and every reservation has exactly
  one home at any moment, so racing purchases neither oversell nor lose units; a release of
  a reservation made before the switch finds it in its new home.
- Healing: a switch that died leaves ``active = switching``; once its lock has expired, the
  next process to look restores ``active`` from PostgreSQL (whose transaction either
  committed the new strategy or did not). A Redis that lost ``active`` gets it back the same
  way. The switch lock is not trusted for this: a flush or an expired lock says nothing about
  whether a switch still moves state, so healing happens only while holding the fence
  shared (``pg_try_advisory_xact_lock_shared``), which a moving switch holds exclusively;
  otherwise the process waits. Only the owner of the switch lock writes ``active``.
  ``shop stock reconcile --fix`` (``repair``) runs behind the same fence.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.adapters.db.stock_fence import (
    STRATEGY_SETTING,
    StrategyMoved,
    fence_is_quiet,
    hold_fence,
    read_setting,
    stored_strategy,
    write_setting,
)
from shop.adapters.db.stock_ledger import (
    held_outside_orders,
    ledger_snapshot,
    option_ledger,
    order_states,
)
from shop.adapters.db.stock_rebuilds import last_rebuild, record_rebuild
from shop.adapters.db.stock_state import StateLost
from shop.adapters.redis.stock_keys import ACTIVE, SWITCH_LOCK, SWITCHING
from shop.adapters.stock_home import StockHome, StockStrategy
from shop.domain.errors import Conflict, DomainError, InvalidInput, Unavailable
from shop.domain.stock.ledger import expected_left
from shop.domain.stock.model import (
    HeldReservation,
    Line,
    OptionStock,
    PerBuyerLimit,
    RebuiltOption,
    Reservation,
    StockRebuild,
)
from shop.logs import get_logger

_log = get_logger("shop.stock.switch")
T = TypeVar("T")

CACHE_SECONDS = 0.5
REDIS_DOWN_BACKOFF = 5.0
_POLL = 0.01
_REDIS_TIMEOUT = 0.5
SWITCH_LOCK_MS = 30_000

# KEYS: active, switch lock.  ARGV: the value seen ('' when missing), the value to set.
_HEAL = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
# KEYS: switch lock.  ARGV: token, ttl ms (0 = delete)
_OWN_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
# KEYS: switch lock, active.  ARGV: token, the value to set.  Only the lock's owner writes.
_SET_ACTIVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""
# KEYS: switch lock, active.  ARGV: token, ttl ms.  Is the switch still what Redis says?
_CHECK_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lock' end
if redis.call('GET', KEYS[2]) ~= 'switching' then return 'active' end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 'ok'
"""


@dataclass
class _Lease:
    """The switch lock as one switch holds it; ``lost`` says why it no longer does."""

    token: str
    lost: str | None = None


class SwitchableStock:
    """The stock port of a process: the active strategy, followed live (see module)."""

    def __init__(
        self,
        *,
        strategies: Mapping[str, StockStrategy],
        engine: AsyncEngine,
        redis: Redis,
        default: str,
        wait: float = 2.0,
    ) -> None:
        if default not in strategies:
            raise ValueError(f"unknown default stock strategy {default!r}")
        self._strategies = dict(strategies)
        self._engine = engine
        self._redis = redis
        self._default = default
        self._wait = wait
        self._cached: str | None = None
        self._checked = 0.0
        self._heal = redis.register_script(_HEAL)
        self._own_lock = redis.register_script(_OWN_LOCK)
        self._set_active = redis.register_script(_SET_ACTIVE)
        self._check_lease = redis.register_script(_CHECK_LEASE)

    @property
    def name(self) -> str:
        return self._cached or self._default

    def strategy(self, name: str) -> StockStrategy:
        return self._strategies[name]

    # -- the port, delegated to the active strategy ---------------------------------------

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        return await self._call(
            lambda s: s.reserve(lines, key=key, buyer=buyer, per_buyer_limit=per_buyer_limit)
        )

    async def confirm(self, key: str) -> None:
        await self._call(lambda s: s.confirm(key))

    async def release(self, key: str) -> None:
        await self._call(lambda s: s.release(key))

    async def put_on_sale(self, option_id: int, units: int, *, key: str | None = None) -> None:
        await self._call(lambda s: s.put_on_sale(option_id, units, key=key))

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        return await self._call(lambda s: s.available(option_ids))

    async def _call(self, operation: Callable[[StockStrategy], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self._wait
        fresh = False
        while True:
            name = await self._active(fresh=fresh)
            if name is not None:
                try:
                    return await operation(self._strategies[name])
                except StrategyMoved:
                    _log.debug("stock strategy moved under us; following it", was=name)
            if time.monotonic() > deadline:
                raise Unavailable("the stock strategy is being switched; please retry")
            if fresh:
                await asyncio.sleep(_POLL)
            fresh = True

    # -- which strategy is active ---------------------------------------------------------

    async def _active(self, *, fresh: bool) -> str | None:
        """The active strategy, or ``None`` while a switch runs."""
        if (
            not fresh
            and self._cached is not None
            and time.monotonic() - self._checked < CACHE_SECONDS
        ):
            return self._cached
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                pipe = self._redis.pipeline(transaction=False)
                pipe.get(ACTIVE)
                pipe.exists(SWITCH_LOCK)
                seen, switching = await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            # Redis is unreachable: PostgreSQL still knows, and a PostgreSQL strategy sells on.
            # Ask Redis again only after a while, so an outage does not slow every purchase.
            return self._remember(await self._stored(), backoff=REDIS_DOWN_BACKOFF)
        value = seen.decode() if seen else None
        if value in self._strategies:
            return self._remember(value)
        if value == SWITCHING and switching:
            return None
        return await self._heal_unless_switching(value)

    async def _heal_unless_switching(self, seen: str | None) -> str | None:
        """Put ``active`` back from PostgreSQL — only when PostgreSQL confirms no switch runs.

        Redis losing ``active`` and the switch lock (a flush, a restart from an older
        snapshot, an expired lock) does not mean no switch is moving state: healing then
        would let the old strategy sell units the switch already handed over. A switch holds
        the fence exclusively while it moves state, so the heal runs only with the fence
        taken shared (no switch can start until it is done); otherwise it waits.
        """
        async with self._engine.begin() as conn:
            if not await fence_is_quiet(conn):
                return None
            stored = await stored_strategy(conn, default=self._default)
            if stored not in self._strategies:
                raise RuntimeError(f"stored stock strategy {stored!r} is not registered")
            with contextlib.suppress(RedisError, OSError):
                await self._heal(keys=[ACTIVE, SWITCH_LOCK], args=[seen or "", stored])
        return self._remember(stored)

    def _remember(self, name: str, *, backoff: float = 0.0) -> str:
        self._cached = name
        self._checked = time.monotonic() + backoff
        return name

    async def _stored(self) -> str:
        async with self._engine.begin() as conn:
            name = await stored_strategy(conn, default=self._default)
        if name not in self._strategies:
            raise RuntimeError(f"stored stock strategy {name!r} is not registered")
        return name

    # -- operations (StockOperations) -----------------------------------------------------

    async def active_strategy(self) -> str:
        return await self._active(fresh=True) or SWITCHING

    async def use(self, name: str) -> str:
        """Switch the deployment to ``name``; returns the strategy it replaced.

        Either the switch completes with every unit and reservation in the new home, or it
        rolls back (``Conflict``) and the old strategy keeps everything: a Redis loss under it
        (its lock or ``active = switching`` gone, a store's state lost mid-read or mid-write)
        aborts before the commit. A loss right after the commit is reported here, and the
        new home recovers at once (the counter rebuilds from the ledger).
        """
        if name not in self._strategies:
            known = ", ".join(sorted(self._strategies))
            raise InvalidInput(f"unknown stock strategy {name!r} (known: {known})")
        async with self._switch_lock() as lease:
            current = await self._stored()
            if current == name:
                await self._set_active(keys=[SWITCH_LOCK, ACTIVE], args=[lease.token, name])
                return self._remember(current)
            source, target = self._strategies[current].home, self._strategies[name].home
            moving = source.name != target.name
            if moving:
                await source.prepare()

            async def move(conn: AsyncConnection) -> None:
                if moving:
                    state = await source.export_state(conn)
                    await source.vacate(conn)
                    await target.import_state(conn, state)
                    if not await target.intact(conn):
                        raise StateLost(f"the {target.name} store lost what was imported")
                await write_setting(conn, STRATEGY_SETTING, name)

            try:
                # Rolled back, the new home keeps nothing of a (half-)import.
                undo = target.after_vacate if moving else None
                await self._fenced(lease, current, name, move, undo=undo)
            except (StateLost, RedisError, OSError) as exc:
                # Raised inside the transaction (or before it began): nothing was committed.
                _log.error("stock switch rolled back", previous=current, target=name, why=str(exc))
                raise Conflict(
                    f"{exc}: the switch to {name} was rolled back and {current} still sells; "
                    "run it again"
                ) from None
            if moving:
                try:
                    await source.after_vacate()
                except (RedisError, OSError) as exc:
                    # Harmless leftovers (no generation, not active); the next import clears.
                    _log.warning("could not clean the previous stock store", error=str(exc))
                await self._check_committed(target, name)
            _log.warning("stock strategy switched", previous=current, active=name)
            self._remember(name)
            return current

    async def repair(self) -> list[OptionStock]:
        """Reset what is left of each drifting option to the ledger's figure (see port)."""
        async with self._switch_lock() as lease:
            current = await self._stored()
            home = self._strategies[current].home
            await home.prepare()
            repaired: list[OptionStock] = []

            async def reset(conn: AsyncConnection) -> None:
                state = await home.export_state(conn)
                async with ledger_snapshot(self._engine) as view:
                    entries = await option_ledger(view)
                    states = await order_states(view, [held.key for held in state.held])
                outside = held_outside_orders(state.held, states)
                for option_id, entry in entries.items():
                    held = outside.get(option_id, 0)
                    expected = max(expected_left(entry.stock_total, sold=entry.sold, held=held), 0)
                    before = state.remaining.get(option_id)
                    if before != expected:
                        repaired.append(
                            OptionStock(
                                option_id=option_id,
                                stock_total=entry.stock_total,
                                sold=entry.sold,
                                held=held,
                                db_stock=entry.stock,
                                authoritative=before,
                            )
                        )
                    state.remaining[option_id] = expected
                await home.import_state(conn, state)
                if not await home.intact(conn):
                    raise StateLost(f"the {home.name} store lost what was repaired")
                await record_rebuild(
                    conn,
                    StockRebuild(
                        at=datetime.datetime.now(datetime.UTC),
                        strategy=current,
                        cause="repair",
                        source=f"the {home.name} store",
                        options=len(entries),
                        changed=tuple(
                            RebuiltOption(
                                option.option_id,
                                before=option.authoritative,
                                after=max(option.expected, 0),
                            )
                            for option in repaired
                        ),
                    ),
                )

            try:
                await self._fenced(lease, current, current, reset)
            except (StateLost, RedisError, OSError) as exc:
                raise Conflict(f"{exc}: the repair was rolled back; run it again") from None
            await self._check_committed(home, current)
            return repaired

    async def _check_committed(self, home: StockHome, strategy: str) -> None:
        """After a commit: did the store keep what it was given? If not, say so and recover.

        The commit stands whatever happens here: a recovery that cannot finish now is left
        to the next sale (which finds the state missing and recovers it the same way).
        """
        try:
            async with self._engine.connect() as conn:
                kept = await home.intact(conn)
            if kept:
                return
            _log.error(
                "Redis lost the stock state right after it was committed; rebuilding it "
                "from the ledger",
                strategy=strategy,
            )
            await home.prepare()
        except (DomainError, StrategyMoved, RedisError, OSError) as exc:
            _log.error("stock state not recovered yet; the next sale recovers it", error=str(exc))

    async def _fenced(
        self,
        lease: _Lease,
        current: str,
        after: str,
        work: Callable[[AsyncConnection], Awaitable[None]],
        *,
        undo: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run ``work`` with ``active = switching`` and the PostgreSQL fence held exclusively.

        Commits only if, just before, the switch still holds its lock and ``active`` still
        says ``switching`` (one atomic check): otherwise Redis lost them, someone may have
        healed or started another switch, and the transaction rolls back (``StateLost``).
        When ``work`` started and fails, ``undo`` runs before the fence is released, so it
        can never touch the state of a switch that runs next.
        """
        if not await self._set_active(keys=[SWITCH_LOCK, ACTIVE], args=[lease.token, SWITCHING]):
            raise StateLost("the stock switch lost its lock before it started")
        committed = False
        try:
            async with self._engine.begin() as conn:
                await hold_fence(conn)
                await self._confirm_lease(lease)
                if await read_setting(conn, STRATEGY_SETTING) != current:
                    raise Conflict("the stock strategy changed meanwhile; try again")
                try:
                    await work(conn)
                    await self._confirm_lease(lease)
                except BaseException:
                    if undo is not None:
                        with contextlib.suppress(RedisError, OSError):
                            await undo()
                    raise
            committed = True
        finally:
            # Only the lock's owner writes ``active``; with the lock lost, healing (which
            # asks PostgreSQL first) puts the committed name back.
            try:
                await self._set_active(
                    keys=[SWITCH_LOCK, ACTIVE], args=[lease.token, after if committed else current]
                )
            except (RedisError, OSError) as exc:
                _log.warning("could not publish the stock strategy", error=str(exc))

    async def _confirm_lease(self, lease: _Lease) -> None:
        if lease.lost is None:
            try:
                outcome = await self._check_lease(
                    keys=[SWITCH_LOCK, ACTIVE], args=[lease.token, SWITCH_LOCK_MS]
                )
            except (RedisError, OSError) as exc:
                outcome, lease.lost = b"down", f"Redis failed under the stock switch ({exc})"
            if lease.lost is None and outcome != b"ok":
                lease.lost = (
                    "the stock switch lost its lock"
                    if outcome == b"lock"
                    else "Redis no longer marks the switch (active is not 'switching')"
                )
        if lease.lost is not None:
            raise StateLost(lease.lost)

    @contextlib.asynccontextmanager
    async def _switch_lock(self) -> AsyncIterator[_Lease]:
        lease = _Lease(uuid.uuid4().hex)
        if not await self._redis.set(SWITCH_LOCK, lease.token, nx=True, px=SWITCH_LOCK_MS):
            raise Conflict("another stock switch or repair is in progress")

        async def keep() -> None:
            """Extend the lock; a failed extension is retried, a lost lock is recorded (the
            switch checks before it commits) — never ignored."""
            while lease.lost is None:
                await asyncio.sleep(SWITCH_LOCK_MS / 3000)
                try:
                    kept = await self._own_lock(
                        keys=[SWITCH_LOCK], args=[lease.token, SWITCH_LOCK_MS]
                    )
                except (RedisError, OSError) as exc:
                    _log.warning("could not extend the stock switch lock", error=str(exc))
                    continue
                if not kept:
                    lease.lost = "the stock switch lost its lock"
                    _log.error("the stock switch lost its lock; it will roll back")

        keeper = asyncio.create_task(keep())
        try:
            yield lease
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(RedisError, OSError):
                await self._own_lock(keys=[SWITCH_LOCK], args=[lease.token, 0])

    async def status(self, option_ids: Sequence[int] | None = None) -> list[OptionStock]:
        home = self._strategies[await self._stored()].home
        held = await home.open_reservations()
        if option_ids is not None:
            # Only the reservations touching these options: looking up the orders of every
            # open reservation made one option's status cost seconds on a busy deployment.
            wanted = set(option_ids)
            held = [r for r in held if any(line.option_id in wanted for line in r.lines)]
        async with ledger_snapshot(self._engine) as view:
            entries = await option_ledger(view, option_ids)
            states = await order_states(view, [reservation.key for reservation in held])
        outside = held_outside_orders(held, states)
        ids = list(entries)
        remaining = await home.remaining(ids)
        figures: dict[int, dict[str, int | None]] = {option_id: {} for option_id in ids}
        homes = {strategy.home.name: strategy.home for strategy in self._strategies.values()}
        for other in homes.values():
            for option_id, named in (await other.figures(ids)).items():
                figures.setdefault(option_id, {}).update(named)
        return [
            OptionStock(
                option_id=option_id,
                stock_total=entry.stock_total,
                sold=entry.sold,
                held=outside.get(option_id, 0),
                db_stock=entry.stock,
                figures=figures.get(option_id, {}),
                authoritative=remaining.get(option_id),
            )
            for option_id, entry in entries.items()
        ]

    async def last_rebuild(self) -> StockRebuild | None:
        async with self._engine.connect() as conn:
            return await last_rebuild(conn)

    async def sync(self) -> int:
        return await self._strategies[await self._stored()].home.sync()

    async def open_reservations(self) -> list[HeldReservation]:
        return await self._strategies[await self._stored()].home.open_reservations()

    async def retire(self, keys: Sequence[str]) -> None:
        await self._strategies[await self._stored()].home.retire(keys)

    async def close(self) -> None:
        for strategy in self._strategies.values():
            closer = getattr(strategy, "close", None)
            if closer is not None:
                await closer()

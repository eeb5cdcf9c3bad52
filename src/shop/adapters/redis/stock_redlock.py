"""The ``redlock`` stock strategy: a Redlock per option, PostgreSQL's conditional UPDATE inside.

The lock orders buyers of one option so they do not pile up on its row lock in PostgreSQL;
it is not what keeps the stock right. The guarded section is the ``db`` strategy's
reservation (``shop_reserve_stock``), whose ``UPDATE option SET stock = stock - n WHERE
id = :id AND stock >= n`` is the fencing guard: if a lease expires mid-section (a GC pause, a
slow disk) and a second holder enters, the row lock and the ``stock >= n`` predicate still
let only what is there be taken. Without that guard, a read-modify-write under an expired
lease would oversell.

Keeping it fast, since one hot option is served one holder at a time:
- before the lock: the connection checkout and a lock-free "already sold out?" read (the
  last buyers of a sold-out option never queue for the lock: they go through the
  reservation unlocked, which refuses them in the right order);
- inside the lock: one round trip, the ``db`` strategy's reservation statement
  (``shop_reserve_stock``: record, tally, decrement(s), commit on the server); and the buyers
  of one option queued in this process go together (``Coalescer``): the batch waiting for
  the lock takes every one's units in one statement (``shop_reserve_stocks``, each buyer in
  a subtransaction of its own, in arrival order) per lock turn, so a hot option costs a lock
  turn and a round trip per batch, not per sale;
- within one process, buyers of one option queue on a local ``asyncio.Lock`` first, so only
  one task per process polls Redis for the Redlock; and while buyers are queued, the holder
  hands its acquisition to the next one instead of releasing and re-acquiring it, for at
  most ``HANDOVER_SECONDS`` (and a quarter of the lease) — a burst costs two Redis round
  trips, not two per sale, and other processes wait tens of milliseconds at most.

Options are locked in id order (no deadlock between multi-line orders). With several
masters, a fresh pottery ``AIORedlock`` is made per acquisition (its instances are not safe
to share across tasks; a handed-over one is used by one task at a time, in turn, behind the
local queue). With one master (the default: the shop's own Redis) a Redlock is one
``SET key token NX PX lease`` and a compare-and-delete, which is what redis-py's own
``Lock`` does, on the same key and with the same token semantics as pottery's: it costs a
third of the CPU of pottery's quorum machinery (``benchmarks.purchase_profile``), and
processes using either hold the lock exclusively against each other.
A buyer whose batch cannot get every lock within ``SHOP_REDLOCK_WAIT`` of its earliest buyer's
asking gets ``Unavailable`` (503 with ``Retry-After``). With several masters
(``SHOP_REDLOCK_URLS``) a lock needs a majority: one of three may be down; with two down
nobody gets the lock, and buyers are refused, not oversold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pottery import AIORedlock, ReleaseUnlockedLock
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import LockError, RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.adapters.coalescing import Coalescer
from shop.adapters.db.stock import PostgresStock
from shop.adapters.db.stock_reserve import (
    MAX_RESERVE_BATCH,
    ReservationAsk,
    reserve_all_in,
    reserve_in,
)
from shop.adapters.db.stock_rows import fits, raw_connection
from shop.adapters.redis.stock_keys import lock_name
from shop.domain.errors import Unavailable
from shop.domain.stock.model import Line, PerBuyerLimit, Reservation, merge_lines
from shop.domain.stock.preconditions import check_limit_arguments
from shop.logs import get_logger

_log = get_logger("shop.stock.redlock")
HANDOVER_SECONDS = 0.05
# pottery names a Redlock's key ``redlock:<resource>``; the one-master lock uses that key too.
POTTERY_PREFIX = "redlock:"
# Either kind of acquisition: both have ``acquire(blocking=False) -> bool`` and ``release()``.
Acquisition = AIORedlock | Lock


@dataclass
class _Turn:
    """This process's queue for one option, and the Redlock acquisition it may hand over."""

    queue: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0
    redlock: Acquisition | None = None
    since: float = 0.0
    watched: bool = False


def redlock_masters(urls: Sequence[str], *, wait: float, lease: float) -> list[Redis]:
    """One client per master, failing fast: a master that is down must cost one refused
    connection, not redis-py's default retries with backoff (seconds per attempt)."""
    timeout = max(0.05, min(0.5, wait, lease / 2))
    return [
        Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        for url in urls
    ]


class RedlockStock(PostgresStock):
    """``SHOP_STOCK_STRATEGY=redlock``: pottery Redlock per option + the db fencing guard.

    ``confirm``, ``release``, ``put_on_sale`` and ``available`` are the ``db`` strategy's:
    they touch one reservation row or add units, which the row locks already order.
    """

    name = "redlock"

    def __init__(
        self,
        engine: AsyncEngine,
        masters: Sequence[Redis],
        *,
        lease: float = 2.0,
        wait: float = 1.0,
        retry_delay: float = 0.005,
    ) -> None:
        super().__init__(engine)
        if not masters:
            raise ValueError("the redlock strategy needs at least one Redis master")
        self._masters = frozenset(masters)
        self._owned = list(masters)
        self._single = self._owned[0] if len(self._owned) == 1 else None
        self._lease = lease
        self._wait = wait
        self._retry_delay = retry_delay
        # Consecutive buyers of an option in this process share one acquisition for at
        # most this long, so a hot option costs Redis round trips per burst, not per sale,
        # while other processes still get their turn within tens of milliseconds.
        self._handover = min(HANDOVER_SECONDS, lease / 4)
        self._turns: dict[int, _Turn] = {}
        self._batches: dict[int, Coalescer[tuple[ReservationAsk, float], Reservation]] = {}
        self._background: set[asyncio.Future[None]] = set()
        # pottery logs a traceback for every master error on every attempt; with a master
        # down that is hundreds per second. We log one line per refused buyer instead.
        logging.getLogger("pottery").setLevel(logging.CRITICAL)

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        check_limit_arguments(buyer, per_buyer_limit)
        ask = ReservationAsk(key, merge_lines(lines), buyer, per_buyer_limit)
        asked = (ask, time.monotonic() + self._wait)
        if len(ask.lines) > 1:
            [outcome] = await self._reserve_batch([asked])
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        # One option (nearly every flash-sale order): the buyers of this process queued on
        # it go together, one statement per lock turn (see ``Coalescer``).
        option_id = ask.lines[0].option_id
        batches = self._batches.get(option_id)
        if batches is None:
            batches = self._batches[option_id] = Coalescer(
                self._reserve_batch, max_batch=MAX_RESERVE_BATCH
            )
        try:
            return await batches.submit(asked)
        finally:
            if batches.idle and self._batches.get(option_id) is batches:
                del self._batches[option_id]

    async def _reserve_batch(
        self, asked: list[tuple[ReservationAsk, float]]
    ) -> list[Reservation | Exception]:
        """Reserve every ask (all of one option, or one multi-line ask) under its locks.

        The lock-free "already sold out?" read decides only whether to queue: asks it
        refuses still go through the reservation (unlocked: the conditional UPDATE, not the
        lock, keeps the stock right), which answers a retry with its reservation and an
        over-limit buyer with the limit, as the locked path would. The reservation is one
        statement, committed before the locks are left. The batch waits for its locks until
        the earliest of its buyers has waited ``SHOP_REDLOCK_WAIT``.
        """
        asks = [ask for ask, _ in asked]
        deadline = min(until for _, until in asked)
        # Every ask of a batch names the same options: if the smallest cannot fit, none can.
        smallest = min(asks, key=lambda ask: sum(line.quantity for line in ask.lines))
        async with raw_connection(self._autocommit) as raw, contextlib.AsyncExitStack() as held:
            if await fits(raw, smallest.lines):
                option_ids = [line.option_id for line in asks[0].lines]
                await held.enter_async_context(self._locked(option_ids, deadline))
            if len(asks) == 1:
                return [await reserve_in(raw, asks[0], strategy=self.name)]
            return await reserve_all_in(raw, asks, strategy=self.name)

    @asynccontextmanager
    async def _locked(self, option_ids: Sequence[int], deadline: float) -> AsyncIterator[None]:
        """Hold every option's lock (local queue, then Redlock), in id order, by ``deadline``."""
        async with contextlib.AsyncExitStack() as stack:
            for option_id in sorted(option_ids):
                turn = self._turns.get(option_id)
                if turn is None:
                    turn = self._turns[option_id] = _Turn()
                turn.waiting += 1
                try:
                    async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                        await turn.queue.acquire()
                except TimeoutError:
                    raise self._refused(option_id) from None
                finally:
                    turn.waiting -= 1
                stack.push_async_callback(self._leave, option_id, turn)
                if turn.redlock is not None and not self._fresh(turn):
                    await self._release(turn.redlock)
                    turn.redlock = None
                if turn.redlock is None:
                    turn.redlock = await self._acquire(option_id, deadline)
                    turn.since = time.monotonic()
            started = time.monotonic()
            yield
            held = time.monotonic() - started
            if held > self._lease:
                _log.warning("lock lease expired before the decrement committed", held=held)

    def _fresh(self, turn: _Turn) -> bool:
        return time.monotonic() - turn.since < self._handover

    async def _leave(self, option_id: int, turn: _Turn) -> None:
        """Hand the Redlock to the next local buyer while it is fresh, else release it."""
        if turn.redlock is not None and not (turn.waiting and self._fresh(turn)):
            redlock, turn.redlock = turn.redlock, None
            await self._release(redlock)
        turn.queue.release()
        if turn.redlock is not None:
            # Kept for a waiter; if it gives up meanwhile, do not sit on the lock.
            if not turn.watched:
                turn.watched = True
                asyncio.get_running_loop().call_later(
                    self._handover, lambda: self._spawn(self._drop_if_idle(option_id, turn))
                )
        elif not turn.waiting and not turn.queue.locked():
            self._turns.pop(option_id, None)

    async def _drop_if_idle(self, option_id: int, turn: _Turn) -> None:
        turn.watched = False
        if turn.queue.locked() or turn.waiting or turn.redlock is None:
            if turn.redlock is not None:
                turn.watched = True
                asyncio.get_running_loop().call_later(
                    self._handover, lambda: self._spawn(self._drop_if_idle(option_id, turn))
                )
            return
        redlock, turn.redlock = turn.redlock, None
        if self._turns.get(option_id) is turn:
            del self._turns[option_id]
        await self._release(redlock)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lock(self, option_id: int) -> Acquisition:
        if self._single is not None:
            return Lock(
                self._single,
                POTTERY_PREFIX + lock_name(option_id),
                timeout=self._lease,
                blocking=False,
                thread_local=False,
            )
        return AIORedlock(
            key=lock_name(option_id), masters=self._masters, auto_release_time=self._lease
        )

    async def _acquire(self, option_id: int, deadline: float) -> Acquisition:
        lock = self._lock(option_id)
        while True:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                with contextlib.suppress(TimeoutError, RedisError):
                    async with asyncio.timeout(remaining):
                        if await lock.acquire(blocking=False):
                            return lock
            if time.monotonic() >= deadline:
                raise self._refused(option_id)
            await asyncio.sleep(random.uniform(0, self._retry_delay))

    @staticmethod
    async def _release(lock: Acquisition) -> None:
        # An expired lease (or a master gone) cannot be released: the lock is gone anyway.
        with contextlib.suppress(ReleaseUnlockedLock, LockError, RedisError, TimeoutError):
            await lock.release()

    def _refused(self, option_id: int) -> Unavailable:
        _log.warning("lock not obtained in time", option_id=option_id, wait=self._wait)
        return Unavailable(
            f"option {option_id} is in high demand; please retry",
            retry_after=max(1.0, self._wait),
        )

    async def close(self) -> None:
        for turn in list(self._turns.values()):
            if turn.redlock is not None:
                await self._release(turn.redlock)
        self._turns.clear()
        for master in self._owned:
            await master.aclose()

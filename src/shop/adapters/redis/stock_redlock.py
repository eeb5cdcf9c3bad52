"""The ``redlock`` stock strategy: a Redlock per option, PostgreSQL's conditional UPDATE inside.

The lock orders buyers of one option so they do not pile up on its row lock in PostgreSQL;
it is not what keeps the stock right. The guarded section is the ``db`` strategy's
``UPDATE option SET stock = stock - n WHERE id = :id AND stock >= n`` (``take_units``): if a
lease expires mid-section (a GC pause, a slow disk) and a second holder enters, the row lock
and the ``stock >= n`` predicate still let only what is there be taken. That fencing guard is
exactly what the seed's lock branch lacked (a read-modify-write under a 1-second lease).

Keeping it fast, since one hot option is served one holder at a time:
- everything that does not need the lock happens before it: the connection checkout, the
  fence, recording the reservation, the buyer's tally, and a lock-free "already sold out?"
  check (the last buyers of a sold-out option never queue for the lock);
- inside the lock: the decrement(s) and the commit, nothing else;
- within one process, buyers of one option queue on a local ``asyncio.Lock`` first, so only
  one task per process polls Redis for the Redlock and hand-over inside a process is free.

Options are locked in id order (no deadlock between multi-line orders). A fresh pottery
``AIORedlock`` is made per acquisition (its instances are not safe to share across tasks).
A buyer who cannot get every lock within ``SHOP_REDLOCK_WAIT`` gets ``Unavailable`` (503 with
``Retry-After``). With several masters (``SHOP_REDLOCK_URLS``) a lock needs a majority: one of
three may be down; with two down nobody gets the lock, and buyers are refused, not oversold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from pottery import AIORedlock, ReleaseUnlockedLock
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.adapters.db.stock import PostgresStock
from shop.adapters.db.stock_fence import share_fence
from shop.adapters.db.stock_rows import (
    check_limit_arguments,
    count_for_buyer,
    record_reservation,
    refuse_if_short,
    take_units,
)
from shop.adapters.redis.stock_keys import lock_name
from shop.domain.errors import Unavailable
from shop.domain.stock.model import Line, Reservation, merge_lines
from shop.logs import get_logger

_log = get_logger("shop.stock.redlock")


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
        self._lease = lease
        self._wait = wait
        self._retry_delay = retry_delay
        self._local: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        # pottery logs a traceback for every master error on every attempt; with a master
        # down that is hundreds per second. We log one line per refused buyer instead.
        logging.getLogger("pottery").setLevel(logging.CRITICAL)

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: int | None = None,
    ) -> Reservation:
        check_limit_arguments(buyer, per_buyer_limit)
        merged = merge_lines(lines)
        async with self._engine.connect() as conn:
            transaction = await conn.begin()
            try:
                await share_fence(conn, self.name)
                existing = await record_reservation(conn, key, merged, buyer)
                if existing is not None:
                    await transaction.commit()
                    return existing
                if buyer is not None:
                    await count_for_buyer(conn, buyer, merged, per_buyer_limit)
                await refuse_if_short(conn, merged)
                async with self._locked([line.option_id for line in merged]):
                    await take_units(conn, merged)
                    await transaction.commit()
            finally:
                if transaction.is_active:
                    await transaction.rollback()
        return Reservation(key=key, lines=merged)

    @asynccontextmanager
    async def _locked(self, option_ids: Sequence[int]) -> AsyncIterator[None]:
        """Hold every option's lock (local, then Redlock), in id order, within the wait."""
        deadline = time.monotonic() + self._wait
        async with contextlib.AsyncExitStack() as stack:
            for option_id in sorted(option_ids):
                local = self._local.setdefault(option_id, asyncio.Lock())
                try:
                    async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                        await local.acquire()
                except TimeoutError:
                    raise self._refused(option_id) from None
                stack.callback(local.release)
                lock = await self._acquire(option_id, deadline)
                stack.push_async_callback(self._release, lock)
            started = time.monotonic()
            yield
            held = time.monotonic() - started
            if held > self._lease:
                _log.warning("lock lease expired before the decrement committed", held=held)

    async def _acquire(self, option_id: int, deadline: float) -> AIORedlock:
        lock = AIORedlock(
            key=lock_name(option_id), masters=self._masters, auto_release_time=self._lease
        )
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
    async def _release(lock: AIORedlock) -> None:
        # An expired lease (or a master gone) cannot be released: the lock is gone anyway.
        with contextlib.suppress(ReleaseUnlockedLock, RedisError, TimeoutError):
            await lock.release()

    def _refused(self, option_id: int) -> Unavailable:
        _log.warning("lock not obtained in time", option_id=option_id, wait=self._wait)
        return Unavailable(
            f"option {option_id} is in high demand; please retry",
            retry_after=max(1.0, self._wait),
        )

    async def close(self) -> None:
        for master in self._owned:
            await master.aclose()

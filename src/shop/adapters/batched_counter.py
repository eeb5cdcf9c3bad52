"""A request counter that counts in memory and tells the shared counter once per tick.

A Redis round trip per request was the largest single cost of an authenticated request
(``benchmarks/edge_profile.py``). This counter answers every hit from what it knows: the
caller's shared count as of its last word with it, plus the hits this process counted since.
A user new to this process has no shared count yet and is judged on its hits here; an address
new to it (which may be blocked) is sent to the shared counter at once. Every
``tick_seconds`` it sends all the hits it gathered to the shared counter in one round trip
(``hit_many``) and learns each caller's new shared count and how long its window has left.

What that gives up, exactly: a process learns the shared count at each flush (and an
address's at its first request), that is within one tick of each hit it counts. It refuses
a caller as soon as its view (that shared count + its own hits since) goes over the quota.
So each process admits at most about one tick's worth of a caller's requests on a view that
missed the other processes' hits: a caller spread over P processes gets at most the quota
plus what it sends to the other processes in about one tick each, and never more than P
times the quota in a window. With one process the count is exact. Every request is still
counted in the shared counter (refused ones too), at most one tick late; hits of a process
that dies before its flush are lost (at most one tick of them), and a flush that cannot
reach the counter is dropped and logged, as the exact throttle lets requests through when
the counters are unreachable. A block another process set is learnt at the address's first
request here, or at the next flush. Holds and ``seconds_left`` without a known window go to
the shared counter at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from shop.domain.errors import Unavailable
from shop.domain.identity.throttle import Quota
from shop.logs import get_logger

# Windows remembered in this process; beyond this many, ended ones are forgotten at a flush,
# then all of them (forgetting only costs each caller one exact hit).
MAX_KNOWN_WINDOWS = 50_000

_log = get_logger("shop.throttle")
_Key = tuple[Quota, str]


class CountsInBulk(Protocol):
    """The shared counter behind this one (``RedisRequestCounter``)."""

    async def hit_many(self, hits: Sequence[tuple[Quota, str, int]]) -> list[tuple[int, float]]:
        """Each caller's count after adding its hits, and the seconds left in its window."""
        ...

    async def seconds_left(self, quota: Quota, caller: str) -> float: ...

    async def hold(self, quotas: Sequence[Quota], caller: str, *, seconds: int) -> None: ...


class BatchedRequestCounter:
    def __init__(
        self,
        shared: CountsInBulk,
        *,
        tick_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = shared
        self._tick = tick_seconds
        self._clock = clock
        self._pending: dict[_Key, int] = {}
        self._in_flight: dict[_Key, int] = {}
        # The shared count as of the last flush, and (on ``clock``) when its window ends.
        self._known: dict[_Key, tuple[int, float]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()

    async def hit(self, quota: Quota, caller: str) -> int:
        key = (quota, caller)
        if quota.blockable and self._known_count(key) is None:
            # An address this process has no window of (new, or its window ended) is counted
            # at once: its first request learns a block the other processes set.
            [(count, seconds_left)] = await self._shared.hit_many([(quota, caller, 1)])
            self._known[key] = (count, self._clock() + seconds_left)
            return count + self._in_flight.get(key, 0) + self._pending.get(key, 0)
        # Anyone else new here (a user: users are slowed down, never blocked) is judged on
        # its hits in this process alone until the next flush tells the shared count: in a
        # flash sale most buyers send a few requests a window, so asking Redis at once would
        # put the round trip back on nearly every purchase.
        pending = self._pending.get(key, 0) + 1
        self._pending[key] = pending
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_every_tick())
        return (self._known_count(key) or 0) + self._in_flight.get(key, 0) + pending

    async def seconds_left(self, quota: Quota, caller: str) -> float:
        known = self._known.get((quota, caller))
        if known is not None and known[1] > self._clock():
            return known[1] - self._clock()
        return await self._shared.seconds_left(quota, caller)

    async def hold(self, quotas: Sequence[Quota], caller: str, *, seconds: int) -> None:
        await self._shared.hold(quotas, caller, seconds=seconds)

    async def flush(self) -> None:
        """Send the hits gathered so far now (the tick does it on its own; ``close`` too)."""
        async with self._flushing:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            self._in_flight = batch
            try:
                counts = await self._shared.hit_many([(q, c, n) for (q, c), n in batch.items()])
            except asyncio.CancelledError:
                for key, n in batch.items():  # not sent: the next flush (``close``) sends it
                    self._pending[key] = self._pending.get(key, 0) + n
                raise
            except Unavailable as exc:
                _log.warning("throttle counts dropped: counters unreachable", error=repr(exc))
                return
            finally:
                self._in_flight = {}
            now = self._clock()
            for key, (count, seconds_left) in zip(batch, counts, strict=True):
                self._known[key] = (count, now + seconds_left)
            if len(self._known) > MAX_KNOWN_WINDOWS:
                self._known = {k: w for k, w in self._known.items() if w[1] > now}
                if len(self._known) > MAX_KNOWN_WINDOWS:
                    self._known.clear()  # a flood of callers: each one's next hit asks Redis

    def forget(self) -> None:
        """Drop every count this process knows or gathered, for when the shared counts were
        wiped (a test's FLUSHDB): the next request of each caller asks the counter again."""
        self._pending.clear()
        self._known.clear()

    async def close(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        await self.flush()

    def _known_count(self, key: _Key) -> int | None:
        """The caller's shared count as of this process's last word with the counter, not
        counting the hits gathered since; None if its window ended (or was never seen)."""
        known = self._known.get(key)
        if known is None:
            return None
        if known[1] <= self._clock():
            del self._known[key]
            return None
        return known[0]

    async def _flush_every_tick(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(self._tick)
                await self.flush()
        finally:
            self._flusher = None

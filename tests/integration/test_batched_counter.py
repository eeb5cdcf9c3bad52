"""The batched request counter against the real Redis: exact in one process, every hit
reaches the shared count within a tick, and several processes refuse together after it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from redis.asyncio import Redis

from shop.adapters import batched_counter
from shop.adapters.batched_counter import BatchedRequestCounter
from shop.adapters.redis.ratelimit import RedisRequestCounter
from shop.bootstrap import Container
from shop.domain.errors import Unavailable
from shop.domain.identity.throttle import HELD_COUNT, Quota

USER = Quota("user", amount=5, window=60)
TICK = 0.05


def _counter(container: Container, tick: float = TICK) -> BatchedRequestCounter:
    return BatchedRequestCounter(RedisRequestCounter(container.redis), tick_seconds=tick)


async def _command_calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}


async def test_hit_many_counts_a_batch_in_one_round_trip(clean: Container) -> None:
    shared = RedisRequestCounter(clean.redis)
    await shared.hit_many([(USER, "warm-up", 1)])  # loads the Lua script
    before = await _command_calls(clean.redis)
    counts = await shared.hit_many([(USER, "ann", 3), (USER, "bob", 1), (USER, "ann", 2)])
    after = await _command_calls(clean.redis)
    assert [count for count, _ in counts] == [3, 1, 5]
    assert all(58 <= left <= 60 for _, left in counts)
    assert after["evalsha"] - before["evalsha"] == 1
    assert await shared.hit(USER, "ann") == 6, "the same keys as the exact hit"
    for key in [key async for key in clean.redis.scan_iter("shop:throttle:*")]:
        assert 0 < await clean.redis.ttl(key) <= 60, "no counter may live forever"


async def test_one_process_counts_exactly_and_every_hit_reaches_redis(clean: Container) -> None:
    counter, caller = _counter(clean), str(uuid.uuid4())
    try:
        assert [await counter.hit(USER, caller) for _ in range(7)] == [1, 2, 3, 4, 5, 6, 7]
        await asyncio.sleep(TICK * 4)
        assert await RedisRequestCounter(clean.redis).hit(USER, caller) == 8
        # The flush taught it the shared count (7), not yet the hit made past it...
        assert await counter.hit(USER, caller) == 8
        await counter.flush()
        # ...which the next flush brings in, with the window's end.
        assert await counter.hit(USER, caller) == 10
        assert 58 <= await counter.seconds_left(USER, caller) <= 60
    finally:
        await counter.close()


async def test_hits_in_a_tick_cost_one_round_trip(clean: Container) -> None:
    counter = _counter(clean)
    try:
        await counter.hit(USER, "warm-up")
        await counter.flush()  # loads the Lua script
        before = await _command_calls(clean.redis)
        for i in range(20):  # new callers too: nobody's first hit goes to Redis on its own
            await counter.hit(USER, f"user-{i % 4}")
        await counter.flush()
        after = await _command_calls(clean.redis)
        assert after["evalsha"] - before["evalsha"] == 1
    finally:
        await counter.close()


async def test_two_processes_share_counts_one_tick_late(clean: Container) -> None:
    other = Container.build(clean.settings)  # its own connections, as another process has
    one, two, caller = _counter(clean), _counter(other), str(uuid.uuid4())
    try:
        # Hits are counted in memory: within one tick each process misses the other's.
        assert [await one.hit(USER, caller) for _ in range(3)] == [1, 2, 3]
        assert [await two.hit(USER, caller) for _ in range(3)] == [1, 2, 3]
        await asyncio.sleep(TICK * 4)
        # At its flush a process learns the shared count: one flushed before two, so it
        # knows 3 and admits one more; two knows 6 and refuses.
        assert await one.hit(USER, caller) == 4
        assert await two.hit(USER, caller) == 7
        await asyncio.sleep(TICK * 4)
        # Both have flushed since the shared count went over: both refuse from now on.
        assert await one.hit(USER, caller) > USER.amount
        assert await two.hit(USER, caller) > USER.amount
    finally:
        await one.close()
        await two.close()
        await other.close()


async def test_a_window_ends_in_every_process(clean: Container) -> None:
    short = Quota("user", amount=2, window=1)
    counter, caller = _counter(clean), str(uuid.uuid4())
    try:
        assert [await counter.hit(short, caller) for _ in range(3)] == [1, 2, 3]
        await counter.flush()
        await asyncio.sleep(1.1)
        assert await counter.hit(short, caller) == 1
    finally:
        await counter.close()


async def test_close_sends_the_last_hits(clean: Container) -> None:
    counter, caller = _counter(clean, tick=60), str(uuid.uuid4())
    await counter.hit(USER, caller)
    await counter.hit(USER, caller)
    await counter.close()
    assert await RedisRequestCounter(clean.redis).hit(USER, caller) == 3


class Breakable:
    """The Redis counter, until ``broken`` is set: then every call is ``Unavailable``."""

    def __init__(self, shared: RedisRequestCounter) -> None:
        self.shared = shared
        self.broken = False

    def _check(self) -> None:
        if self.broken:
            raise Unavailable("request counter unreachable")

    async def hit_many(self, hits: Sequence[tuple[Quota, str, int]]) -> list[tuple[int, float]]:
        self._check()
        return await self.shared.hit_many(hits)

    async def seconds_left(self, quota: Quota, caller: str) -> float:
        self._check()
        return await self.shared.seconds_left(quota, caller)

    async def hold(self, quotas: Sequence[Quota], caller: str, *, seconds: int) -> None:
        self._check()
        await self.shared.hold(quotas, caller, seconds=seconds)


async def test_an_unreachable_counter_is_unavailable_then_drops_the_batch(
    clean: Container,
) -> None:
    shared = Breakable(RedisRequestCounter(clean.redis))
    counter = BatchedRequestCounter(shared, tick_seconds=60)
    try:
        assert await counter.hit(USER, "ann") == 1
        await counter.flush()  # ann's window is known from here on
        shared.broken = True
        assert await counter.hit(USER, "bob") == 1, "a new caller is counted here until a flush"
        with pytest.raises(Unavailable):  # without a known window it asks the counter
            await counter.seconds_left(USER, "bob")
        # A caller it knows is counted in memory; the failed flush is logged and dropped.
        assert await counter.hit(USER, "ann") == 2
        await counter.flush()
        assert await counter.hit(USER, "ann") == 2
    finally:
        await counter.close()


async def test_memory_stays_bounded_under_a_flood_of_callers(
    clean: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batched_counter, "MAX_KNOWN_WINDOWS", 10)
    counter = _counter(clean, tick=60)
    try:
        for i in range(25):
            await counter.hit(USER, f"caller-{i}")
            await counter.hit(USER, f"caller-{i}")
        await counter.flush()
        assert len(counter._known) <= 10
        # A forgotten caller is judged on this process's hits until the next flush...
        assert await counter.hit(USER, "caller-0") == 1
        await counter.flush()
        # ...which brings its shared count back (2 before, 3 with the hit just sent).
        assert await counter.hit(USER, "caller-0") == 4
    finally:
        await counter.close()


async def test_an_address_new_to_a_process_learns_its_block_at_its_first_request(
    clean: Container,
) -> None:
    address = Quota("anonymous", amount=5, window=60, blockable=True)
    await RedisRequestCounter(clean.redis).hold([address], "192.0.2.7", seconds=30)
    counter = _counter(clean, tick=60)
    try:
        assert await counter.hit(address, "192.0.2.7") > HELD_COUNT, "the block, at once"
        before = await _command_calls(clean.redis)
        assert await counter.hit(USER, "a-new-user") == 1, "a user's first hit waits the tick"
        assert await _command_calls(clean.redis) == {**before, "info": before["info"] + 1}
    finally:
        await counter.close()

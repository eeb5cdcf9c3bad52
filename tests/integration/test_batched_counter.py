"""The batched request counter against the real Redis: exact in one process, every hit
reaches the shared count within a tick, and several processes refuse together after it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from shop.adapters.batched_counter import BatchedRequestCounter
from shop.adapters.redis.ratelimit import RedisRequestCounter
from shop.bootstrap import Container
from shop.domain.errors import Unavailable
from shop.domain.identity.throttle import Quota

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
        await counter.flush()
        before = await _command_calls(clean.redis)
        for i in range(20):
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
        # Within one tick each process only knows its own hits: 3 + 3 admitted, over 5.
        assert [await one.hit(USER, caller) for _ in range(3)] == [1, 2, 3]
        assert [await two.hit(USER, caller) for _ in range(3)] == [1, 2, 3]
        await asyncio.sleep(TICK * 4)
        # A process learns the shared count when it flushes: `one` flushed before `two`'s
        # hits arrived, so its next hit is still judged on its own 3 (+1); `two` knows 6.
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


async def test_an_unreachable_redis_drops_the_batch_and_admits(clean: Container) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    counter = BatchedRequestCounter(RedisRequestCounter(dead), tick_seconds=TICK)
    try:
        assert await counter.hit(USER, "ann") == 1
        await counter.flush()  # logged, not raised: the throttle must not become the outage
        assert await counter.hit(USER, "ann") == 1
        with pytest.raises(Unavailable):  # without a known window it asks the counter
            await counter.seconds_left(USER, "bob")
    finally:
        await counter.close()
        await dead.aclose()

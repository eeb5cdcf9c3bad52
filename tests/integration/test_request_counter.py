"""The Redis request counter (limits' storage) against the real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from shop.adapters.redis.ratelimit import RedisRequestCounter
from shop.bootstrap import Container
from shop.domain.errors import Unavailable
from shop.domain.identity.throttle import Quota

QUOTA = Quota("anonymous", amount=3, window=60)
OTHER = Quota("sign_in", amount=3, window=60)


async def _command_calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}


async def test_hits_count_up_within_a_window_that_expires(clean: Container) -> None:
    counter = clean.request_counter
    caller = f"10.0.0.{uuid.uuid4().int % 250}"
    assert [await counter.hit(QUOTA, caller) for _ in range(4)] == [1, 2, 3, 4]
    assert await counter.hit(QUOTA, "10.1.1.1") == 1
    assert await counter.hit(OTHER, caller) == 1
    left = await counter.seconds_left(QUOTA, caller)
    assert 58 <= left <= 60
    keys = [key async for key in clean.redis.scan_iter("shop:throttle:*")]
    assert keys
    for key in keys:
        assert 0 < await clean.redis.ttl(key) <= 60, "no counter may live forever"


async def test_a_window_starts_afresh_after_it_ends(clean: Container) -> None:
    short = Quota("anonymous", amount=1, window=1)
    assert await clean.request_counter.hit(short, "1.2.3.4") == 1
    assert await clean.request_counter.hit(short, "1.2.3.4") == 2
    await asyncio.sleep(1.1)
    assert await clean.request_counter.hit(short, "1.2.3.4") == 1


async def test_a_hold_exhausts_every_named_quota_until_it_ends(clean: Container) -> None:
    counter = clean.request_counter
    await counter.hit(QUOTA, "1.2.3.4")
    await counter.hold((QUOTA, OTHER), "1.2.3.4", seconds=1)
    assert await counter.hit(QUOTA, "1.2.3.4") > 10**9
    assert await counter.hit(OTHER, "1.2.3.4") > 10**9
    assert 0 <= await counter.seconds_left(QUOTA, "1.2.3.4") <= 1
    assert await counter.hit(QUOTA, "5.6.7.8") == 1
    await asyncio.sleep(1.1)
    assert await counter.hit(QUOTA, "1.2.3.4") == 1
    assert await counter.hit(OTHER, "1.2.3.4") == 1


async def test_a_hit_is_one_round_trip(clean: Container) -> None:
    counter = clean.request_counter
    await counter.hit(QUOTA, "warm-up")  # the first call may load the Lua script
    before = await _command_calls(clean.redis)
    for i in range(10):
        await counter.hit(QUOTA, f"caller-{i}")
    after = await _command_calls(clean.redis)
    sent = {name: after[name] - before.get(name, 0) for name in after}
    sent = {name: calls for name, calls in sent.items() if calls}
    # One EVALSHA per hit; INCRBY and EXPIRE run inside the script, on the server.
    assert sent.pop("evalsha") == 10
    assert set(sent) <= {"incrby", "expire", "info"}, sent


async def test_an_unreachable_redis_is_unavailable_not_a_crash() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        counter = RedisRequestCounter(dead)
        with pytest.raises(Unavailable):
            await counter.hit(QUOTA, "1.2.3.4")
        with pytest.raises(Unavailable):
            await counter.hold((QUOTA,), "1.2.3.4", seconds=1)
    finally:
        await dead.aclose()

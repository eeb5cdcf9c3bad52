"""Request counters for abuse protection, shared by every app process through Redis.

Built on the ``limits`` package (the library behind Flask-Limiter and SlowAPI): its Redis
storage increments a fixed-window counter and sets its expiry in one Lua call, so a counted
request costs exactly one round trip and no window is ever left without a TTL, and its
``RateLimitItem`` names the keys. The storage borrows the container's connection pool, so
throttling opens no connections of its own.

``hit_many`` counts a batch (several callers, several requests each) in one round trip: the
batched counter (``adapters/batched_counter.py``) flushes the hits it gathered that way.

A block ("hold") overwrites the caller's counters with a huge count whose TTL is the block
time: the next ``hit`` is the same single round trip as always and already reads "refused",
and the block ends when Redis expires the key, with nobody left to clean up.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shop.domain.errors import Unavailable
from shop.domain.identity.throttle import HELD_COUNT, Quota

KEY_PREFIX = "shop:throttle"
# limits' incr_expire.lua over many keys: INCRBY, a TTL for a window that starts with this
# INCRBY, and the TTL left (the batched counter needs it to forget a count when its window ends).
_HIT_MANY = """
local out = {}
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[2 * i])
  local count = redis.call('incrby', key, amount)
  if count == amount then
    redis.call('expire', key, ARGV[2 * i - 1])
  end
  out[2 * i - 1] = count
  out[2 * i] = redis.call('pttl', key)
end
return out
"""


class RedisRequestCounter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        self._hit_many = redis.register_script(_HIT_MANY)

    @staticmethod
    def _key(quota: Quota, caller: str) -> str:
        return RateLimitItemPerSecond(quota.amount, quota.window, namespace=quota.name).key_for(
            caller
        )

    async def hit(self, quota: Quota, caller: str) -> int:
        try:
            return await self._storage.incr(self._key(quota, caller), quota.window)
        except RedisError as exc:
            raise Unavailable("request counter unreachable") from exc

    async def hit_many(self, hits: Sequence[tuple[Quota, str, int]]) -> list[tuple[int, float]]:
        """Count ``n`` requests of each (quota, caller, n) in one round trip; return each
        caller's count after it and the seconds left in its window."""
        keys = [f"{KEY_PREFIX}:{self._key(quota, caller)}" for quota, caller, _ in hits]
        args = [value for quota, _, n in hits for value in (quota.window, n)]
        try:
            out = await self._hit_many(keys=keys, args=args)
        except RedisError as exc:
            raise Unavailable("request counter unreachable") from exc
        return [(int(out[i]), max(0, int(out[i + 1])) / 1000) for i in range(0, len(out), 2)]

    async def seconds_left(self, quota: Quota, caller: str) -> float:
        try:
            expires_at = await self._storage.get_expiry(self._key(quota, caller))
        except RedisError as exc:
            raise Unavailable("request counter unreachable") from exc
        return max(0.0, expires_at - time.time())

    async def hold(self, quotas: Sequence[Quota], caller: str, *, seconds: int) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for quota in quotas:
                    # The storage's own key layout: "<key_prefix>:<item key>".
                    key = f"{KEY_PREFIX}:{self._key(quota, caller)}"
                    pipe.set(key, HELD_COUNT, px=seconds * 1000)
                await pipe.execute()
        except RedisError as exc:
            raise Unavailable("request counter unreachable") from exc

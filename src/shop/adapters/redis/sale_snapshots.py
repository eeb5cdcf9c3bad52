"""``SaleSnapshots`` in Redis: one capped list shared by every process and machine.

The worker pushes a snapshot a second; web processes read the newest ones for ``/metrics``
and the dashboard. A list capped with ``LTRIM`` in the same pipeline never grows, and its
TTL makes a stopped worker's numbers disappear instead of looking live forever.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from opentelemetry.instrumentation.utils import suppress_instrumentation
from redis.asyncio import Redis

from shop.domain.observation.model import SaleSnapshot

KEY = "shop:observe:snapshots"


class RedisSaleSnapshots:
    def __init__(self, redis: Redis, *, keep: int = 60, ttl_seconds: int = 300) -> None:
        self._redis = redis
        self._keep = keep
        self._ttl = ttl_seconds
        self._decoder = msgspec.json.Decoder(SaleSnapshot)

    async def record(self, snapshot: SaleSnapshot) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(KEY, msgspec.json.encode(snapshot))
        pipe.ltrim(KEY, 0, self._keep - 1)
        pipe.expire(KEY, self._ttl)
        await pipe.execute()

    async def recent(self, limit: int) -> Sequence[SaleSnapshot]:
        # Read on every scrape and every dashboard refresh: never worth a span of its own.
        with suppress_instrumentation():
            raw: list[bytes] = await self._redis.lrange(KEY, 0, limit - 1)  # type: ignore[misc]
        return [self._decoder.decode(item) for item in raw]

"""The global top list in a Redis sorted set, swapped whole by each popularity refresh.

Each member carries the product's summary, so ``GET /api/products/popular`` is one ZREVRANGE
and never touches PostgreSQL (it is the hottest page of a flash sale). The price of that is
staleness: names and prices in the list are as of the last refresh (at most one refresh
interval old); the product page is always current.

Members start with the zero-padded product id: Redis orders equal scores by member, so ties
come out id-descending, exactly like ``ORDER BY popularity DESC, id DESC`` in PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import msgspec
from redis.asyncio import Redis

from shop.domain.catalog.model import ProductSummary

DEFAULT_KEY = "shop:catalog:popular"
_ID_WIDTH = 20


class _Entry(msgspec.Struct, array_like=True):
    id: int
    name: str
    price: int
    popularity: int
    created_at: datetime
    image_url: str | None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_Entry)


def _member(summary: ProductSummary) -> bytes:
    entry = _Entry(
        id=summary.id,
        name=summary.name,
        price=summary.price,
        popularity=summary.popularity,
        created_at=summary.created_at,
        image_url=summary.image_url,
    )
    return f"{summary.id:0{_ID_WIDTH}d}|".encode() + _encoder.encode(entry)


def _summary(member: bytes) -> ProductSummary:
    entry = _decoder.decode(member[_ID_WIDTH + 1 :])
    return ProductSummary(
        id=entry.id,
        name=entry.name,
        price=entry.price,
        popularity=entry.popularity,
        created_at=entry.created_at,
        image_url=entry.image_url,
    )


class RedisPopularRanking:
    def __init__(self, redis: Redis, *, key: str = DEFAULT_KEY) -> None:
        self._redis = redis
        self._key = key

    async def replace(self, products: Sequence[ProductSummary]) -> None:
        if not products:
            await self._redis.delete(self._key)
            return
        # Built under a private name, then renamed over the live key: RENAME is atomic, so
        # readers never see a half-built list, and two refreshes racing each publish a whole one.
        building = f"{self._key}:building:{uuid.uuid4().hex}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(building, {_member(p): p.popularity for p in products})
            pipe.rename(building, self._key)
            await pipe.execute()

    async def top(self, limit: int) -> list[ProductSummary] | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(self._key)
            pipe.zrevrange(self._key, 0, limit - 1)
            present, members = await pipe.execute()
        if not present:
            return None
        return [_summary(member) for member in members]

    async def forget(self, product_id: int) -> None:
        prefix = f"{product_id:0{_ID_WIDTH}d}|".encode()
        members = await self._redis.zrange(self._key, 0, -1)
        gone = [member for member in members if member.startswith(prefix)]
        if gone:
            await self._redis.zrem(self._key, *gone)

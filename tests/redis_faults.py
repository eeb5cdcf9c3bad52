"""Deterministic Redis loss for fault tests: FLUSHDB on the real server at a chosen moment.

``RedisLoss`` hooks the connection pool of one real client (every command, pipeline and
script of that client checks a connection out of it once per round trip). While armed it
flushes the server just before a chosen round trip, or before the first round trip at which
a condition holds. Nothing is faked: the flush is a real FLUSHDB on the real Redis, and the
code under test talks to the real server before and after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis


class RedisLoss:
    """Flushes the Redis behind ``redis`` once, at the moment a test chooses."""

    def __init__(self, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self._redis = redis
        pool = redis.connection_pool
        self._checkout: Callable[..., Awaitable[Any]] = pool.get_connection
        monkeypatch.setattr(pool, "get_connection", self._get_connection)
        self.before_trip: int | None = None
        self.when: Callable[[Redis], Awaitable[bool]] | None = None
        self.armed = False
        self.fired = False
        self.trips = 0
        self._inside = False

    @asynccontextmanager
    async def armed_during(self) -> AsyncIterator[None]:
        self.armed, self.trips = True, 0
        try:
            yield
        finally:
            self.armed = False

    def arm_during(self, monkeypatch: pytest.MonkeyPatch, owner: object, method: str) -> None:
        """Arm the loss while ``owner.method`` (an async method of a real object) runs."""
        original = getattr(owner, method)

        async def armed(*args: Any, **kwargs: Any) -> Any:
            async with self.armed_during():
                return await original(*args, **kwargs)

        monkeypatch.setattr(owner, method, armed)

    async def flush(self) -> None:
        self._inside = True
        try:
            await self._redis.flushdb()
        finally:
            self._inside = False
        self.fired = True

    async def _get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed and not self.fired and not self._inside:
            self.trips += 1
            due = self.before_trip is not None and self.trips == self.before_trip
            if not due and self.when is not None:
                self._inside = True
                try:
                    due = await self.when(self._redis)
                finally:
                    self._inside = False
            if due:
                await self.flush()
        return await self._checkout(*args, **kwargs)

"""/ready reports which dependency is down, with a real Redis really stopped."""

from __future__ import annotations

from pathlib import Path

import msgspec

from shop.adapters.embedded import EmbeddedRedis
from shop.bootstrap import Container
from shop.config import Settings
from shop.entrypoints.http.app import create_app
from tests.conftest import http_client


async def test_ready_is_503_naming_redis_when_redis_is_stopped(
    settings: Settings, tmp_path: Path
) -> None:
    own_redis = EmbeddedRedis(tmp_path)
    container = Container.build(msgspec.structs.replace(settings, redis_url=own_redis.start()))
    try:
        async with http_client(create_app(container)) as client:
            assert (await client.get("/ready")).status_code == 200
            own_redis.kill()
            response = await client.get("/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status_code"] == 503
        assert "redis" in body["detail"]
        assert body["extra"]["checks"] == {"postgres": "ok", "redis": "down"}
        assert response.headers["retry-after"]
        # Liveness does not depend on Redis.
        async with http_client(create_app(container)) as client:
            assert (await client.get("/health")).status_code == 200
    finally:
        await container.close()
        own_redis.stop()


async def test_ready_is_503_naming_postgres_when_postgres_is_unreachable(
    settings: Settings,
) -> None:
    dead = "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"
    container = Container.build(msgspec.structs.replace(settings, database_url=dead))
    try:
        async with http_client(create_app(container)) as client:
            response = await client.get("/ready")
        assert response.status_code == 503
        assert response.json()["extra"]["checks"] == {"postgres": "down", "redis": "ok"}
    finally:
        await container.close()

"""Liveness and readiness, for load balancers and orchestrators.

``/health`` says the process serves HTTP (never touches a dependency, so a database outage
does not get healthy processes restarted). ``/ready`` says this process can take traffic now:
PostgreSQL and Redis both answer, else 503 naming which one does not.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from sqlalchemy import text

from shop.bootstrap import Container
from shop.entrypoints.http.errors import error_response

CHECK_TIMEOUT = 2.0


async def _postgres_ok(container: Container) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), container.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


async def _redis_ok(container: Container) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return bool(await container.redis.ping())  # type: ignore[misc]
    except Exception:
        return False


class HealthController(Controller):
    include_in_schema = True
    tags = ["operations"]

    @get("/health", operation_id="Health", exclude_from_auth=True, cache=False)
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", operation_id="Ready", exclude_from_auth=True, cache=False)
    async def ready(self, container: NamedDependency[Container]) -> Response[Any]:
        postgres, redis = await asyncio.gather(_postgres_ok(container), _redis_ok(container))
        checks = {"postgres": "ok" if postgres else "down", "redis": "ok" if redis else "down"}
        if postgres and redis:
            return Response({"status": "ready", "checks": checks})
        down = [name for name, state in checks.items() if state == "down"]
        return error_response(
            503,
            f"not ready: {', '.join(down)} unreachable",
            {"checks": checks},
            headers={"Retry-After": "1"},
        )

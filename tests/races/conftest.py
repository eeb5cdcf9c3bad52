"""Race fixtures: a container of its own per test, tuned so faults resolve in seconds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest

from shop.bootstrap import Container
from shop.config import Settings

BuildContainer = Callable[..., Awaitable[Container]]


@pytest.fixture
async def build_container(clean: Container, settings: Settings) -> AsyncIterator[BuildContainer]:
    """Containers standing for separate app processes (own pools, own strategy caches)."""
    built: list[Container] = []

    async def build(**changes: Any) -> Container:
        tuned = msgspec.structs.replace(
            settings,
            **{
                "database_pool_size": 8,
                "database_max_overflow": 8,
                "stock_wait": 10.0,
                "stock_recovery_grace": 1.0,
                "redlock_wait": 5.0,
                **changes,
            },
        )
        container = Container.build(tuned)
        built.append(container)
        return container

    yield build
    for container in built:
        await container.close()

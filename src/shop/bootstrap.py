"""Composition root: settings in, wired adapters out. The only module that names concrete adapters.

Entry points (HTTP app, CLI, SAQ worker) call ``resolve_services`` once to know where
PostgreSQL and Redis are (starting the embedded pair when no URL is configured), then build a
``Container`` that owns every connection and closes them in one place.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shop.adapters.db.engine import make_engine, make_sessionmaker
from shop.adapters.db.stock import PostgresStock
from shop.adapters.db.stock_ledger import SqlOrderStates
from shop.adapters.embedded import EmbeddedPostgres, EmbeddedRedis
from shop.adapters.redis.stock_counter import RedisCounterStock
from shop.adapters.redis.stock_redlock import RedlockStock, redlock_masters
from shop.adapters.redis.strategy import StockStrategy, SwitchableStock
from shop.adapters.security import JwtAccessTokens
from shop.config import Settings
from shop.domain.identity.ports import AccessTokens
from shop.domain.stock.ports import OrderStates, StockOperations, StockReservation


@dataclass
class EmbeddedServers:
    """The embedded servers this process joined; ``stop`` leaves them (the last one out stops)."""

    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()


def resolve_services(settings: Settings) -> tuple[Settings, EmbeddedServers]:
    """Fill in missing URLs by starting (or joining) the embedded servers under ``data_dir``."""
    servers = EmbeddedServers()
    changes: dict[str, Any] = {}
    if settings.redis_url is None:
        servers.redis = EmbeddedRedis(settings.data_path)
        changes["redis_url"] = servers.redis.start()
    if settings.database_url is None:
        servers.postgres = EmbeddedPostgres(settings.data_path)
        changes["database_url"] = servers.postgres.start()
    if changes and settings.jwt_secret is None:
        changes["jwt_secret"] = local_jwt_secret(settings.data_path)
    return msgspec.structs.replace(settings, **changes), servers


def require_urls(settings: Settings) -> tuple[str, str]:
    """The (database, redis) URLs of settings that went through ``resolve_services``."""
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("resolve_services() must run first: database or Redis URL is unset")
    return settings.database_url, settings.redis_url


def local_jwt_secret(data_dir: Path) -> str:
    """A per-installation secret for the zero-setup run, kept beside the embedded data.

    Persisted so that tokens survive a restart and every worker process signs alike; never
    committed anywhere. Production must set SHOP_JWT_SECRET (config refuses to start otherwise).
    """
    path = data_dir.resolve() / "jwt_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def jwt_secret_of(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        return settings.jwt_secret
    return local_jwt_secret(settings.data_path)


@dataclass(frozen=True)
class StockDeps:
    """What a stock strategy may be built from."""

    settings: Settings
    engine: AsyncEngine
    redis: Redis


StockFactory = Callable[[StockDeps], StockStrategy]


def _redlock(deps: StockDeps) -> RedlockStock:
    settings = deps.settings
    urls = settings.redlock_urls or (require_urls(settings)[1],)
    return RedlockStock(
        deps.engine,
        redlock_masters(urls, wait=settings.redlock_wait, lease=settings.redlock_lease),
        lease=settings.redlock_lease,
        wait=settings.redlock_wait,
        retry_delay=settings.redlock_retry_delay,
    )


def _counter(deps: StockDeps) -> RedisCounterStock:
    return RedisCounterStock(
        deps.engine,
        deps.redis,
        wait=deps.settings.stock_wait,
        recovery_grace=deps.settings.stock_recovery_grace,
    )


# One line per strategy: adding a strategy is one adapter module plus one entry here.
STOCK_STRATEGIES: dict[str, StockFactory] = {
    "db": lambda deps: PostgresStock(deps.engine),
    "redlock": _redlock,
    "counter": _counter,
}


def build_stock(name: str, deps: StockDeps) -> StockStrategy:
    try:
        factory = STOCK_STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STOCK_STRATEGIES))
        raise ValueError(f"unknown stock strategy {name!r} (known: {known})") from None
    return factory(deps)


def build_switchable_stock(deps: StockDeps) -> SwitchableStock:
    """Every registered strategy behind one port that follows the live switch."""
    return SwitchableStock(
        strategies={name: build_stock(name, deps) for name in STOCK_STRATEGIES},
        engine=deps.engine,
        redis=deps.redis,
        default=deps.settings.stock_strategy,
        wait=deps.settings.stock_wait,
    )


@dataclass
class Container:
    """Every long-lived connection of one process, built once and closed once."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    access_tokens: AccessTokens
    stock: StockReservation
    stock_operations: StockOperations
    order_states: OrderStates
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Container:
        database_url, redis_url = require_urls(settings)
        engine = make_engine(
            database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        redis = Redis.from_url(
            redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        stock = build_switchable_stock(StockDeps(settings, engine, redis))
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=make_sessionmaker(engine),
            redis=redis,
            stock=stock,
            stock_operations=stock,
            order_states=SqlOrderStates(engine),
            access_tokens=JwtAccessTokens(
                jwt_secret_of(settings), ttl_seconds=settings.access_token_ttl
            ),
        )

    async def close(self) -> None:
        closer = getattr(self.stock, "close", None)
        if closer is not None:
            await closer()
        await self.redis.aclose()
        await self.engine.dispose()

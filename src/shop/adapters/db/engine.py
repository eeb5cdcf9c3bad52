"""One async engine per process, configured for short transactions under heavy concurrency."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession


def async_url(url: str) -> str:
    """Accept the URLs people paste (``postgresql://``, ``postgres://``) and pick asyncpg."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in {"postgresql", "postgresql+psycopg2", "postgresql+psycopg"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def plain_dsn(url: str) -> str:
    """The same database as a driver-agnostic ``postgresql://`` DSN (asyncpg, psql, libpq)."""
    parsed = make_url(async_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 20, max_overflow: int = 0) -> AsyncEngine:
    """The shared engine: a fixed pool, no overflow (see ``Settings.database_pool_size``).

    A request that finds every connection busy waits for the next one returned (FIFO, up to
    ``pool_timeout``) instead of opening a connection it would close again after one use.
    """
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping: it costs a round trip per checkout on the purchase path. A connection
        # broken by a database restart fails its request (503, Retry-After) and is discarded.
        pool_pre_ping=False,
        pool_recycle=1800,
        # Errors and logs show the SQL but not its values: those include password hashes,
        # addresses and phone numbers, which must not end up in logs.
        hide_parameters=True,
        # Fail fast instead of queueing buyers behind a dead database.
        pool_timeout=10,
        connect_args={"server_settings": {"application_name": "shop"}, "timeout": 10},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)

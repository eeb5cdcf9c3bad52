"""Test harness: real PostgreSQL and Redis, started once per run.

By default the embedded pair runs in a temporary directory private to this run (so parallel
runs never collide); ``SHOP_TEST_DATABASE_URL`` / ``SHOP_TEST_REDIS_URL`` point the suite at
external servers instead. Either way the run creates its own database and drops it at the
end. Tests under ``unit/`` need none of this: the fixtures below start nothing until asked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shop.adapters.db import migrations
from shop.adapters.db.engine import plain_dsn
from shop.adapters.db.tables import metadata
from shop.adapters.embedded import EmbeddedPostgres, EmbeddedRedis
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.config import Settings
from shop.domain.identity.model import Principal, Role, User, normalise_email
from shop.entrypoints.http.app import create_app
from tests.strategies.ledger_twin import NAME as LEDGER_TWIN
from tests.strategies.ledger_twin import ledger_twin

TEST_JWT_SECRET = "test-secret-not-for-production-0123456789abcdef"

# A fourth, test-only strategy: this line is all it takes for the suites that parametrize over
# the registry to run against it (see tests/strategies/ledger_twin.py).
STOCK_STRATEGIES[LEDGER_TWIN] = ledger_twin


@pytest.fixture(scope="session")
def embedded_dir() -> Iterator[Path]:
    """Outside pytest's basetemp on purpose: pytest prunes old basetemp directories, and a
    concurrent run doing so would delete the data of this run's servers under them."""
    path = Path(tempfile.mkdtemp(prefix="shop-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server_url(embedded_dir: Path) -> Iterator[str]:
    external = os.environ.get("SHOP_TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(embedded_dir)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def redis_url(embedded_dir: Path) -> Iterator[str]:
    external = os.environ.get("SHOP_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(embedded_dir)
    url = server.start()
    yield url
    server.stop()


async def create_database(server_url: str) -> str:
    """A fresh, empty database on the server; returns its SQLAlchemy URL."""
    name = f"shop_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(plain_dsn(server_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(server_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    conn = await asyncpg.connect(plain_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """This run's database, migrated to head by the real Alembic revisions."""
    url = await create_database(postgres_server_url)
    await asyncio.to_thread(migrations.upgrade, url)
    yield url
    await drop_database(postgres_server_url, url)


@pytest.fixture(scope="session")
def settings(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        redis_url=redis_url,
        data_dir=str(tmp_path_factory.mktemp("data")),
        jwt_secret=TEST_JWT_SECRET,
        log_level="WARNING",
        stock_strategy="db",
        # The cheapest argon2 the settings allow: real hashing, milliseconds per test.
        password_hash_time_cost=1,
        password_hash_memory_kib=8192,
        # Off for the suite (every test client shares one address); tests of the throttle
        # switch it on with with_settings().
        rate_limit_enabled=False,
    )


@pytest.fixture(scope="session")
async def container(settings: Settings) -> AsyncIterator[Container]:
    built = Container.build(settings)
    yield built
    await built.close()


async def reset_state(container: Container) -> None:
    """Empty every table and the Redis database: each test starts from nothing."""
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    async with container.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await container.redis.flushdb()
    forget = getattr(container.batched_request_counter, "forget", None)
    if forget is not None:
        forget()  # its memory of the counts FLUSHDB just wiped


def with_settings(container: Container, **changes: Any) -> Container:
    """The same connections under other settings, e.g. ``with_settings(c, rate_limit_enabled=True)``
    then ``create_app(...)`` on the result: apps read their settings from their container."""
    return dataclasses.replace(
        container, settings=msgspec.structs.replace(container.settings, **changes)
    )


@pytest.fixture
async def clean(container: Container) -> AsyncIterator[Container]:
    await reset_state(container)
    yield container


@pytest.fixture
def app(clean: Container) -> Litestar:
    return create_app(clean)


def http_client(app: Litestar) -> httpx.AsyncClient:
    """An HTTP client calling the app in this event loop (Litestar's AsyncTestClient would
    run it in another thread's loop, where the shared asyncpg pool cannot follow)."""
    # Litestar types __call__ with its precise scope/event unions, httpx with the generic
    # MutableMapping ASGI signature; parameters are contravariant, so mypy rejects a real ASGI app.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(app) as test_client:
        yield test_client


@pytest.fixture
async def redis(clean: Container) -> Redis:
    return clean.redis


def bearer(
    container: Container, *, role: Role = Role.CUSTOMER, user_id: uuid.UUID | None = None
) -> dict[str, str]:
    """An Authorization header for a principal, minted with the app's own token issuer."""
    token, _ = container.access_tokens.issue(Principal(user_id=user_id or uuid.uuid4(), role=role))
    return {"Authorization": f"Bearer {token}"}


TEST_PASSWORD = "test Passw0rd"
_hashed_passwords: dict[str, str] = {}


async def make_user(
    container: Container,
    role: Role = Role.CUSTOMER,
    *,
    email: str | None = None,
    password: str = TEST_PASSWORD,
    name: str = "Test User",
) -> tuple[uuid.UUID, dict[str, str]]:
    """A real ``user_account`` row (foreign keys to it hold) and an Authorization header for it.

    The user can also log in with ``password``. Each password is hashed once per run.
    """
    if password not in _hashed_passwords:
        _hashed_passwords[password] = await container.password_hasher.hash(password)
    user = User(
        id=uuid.uuid4(),
        email=normalise_email(email or f"user-{uuid.uuid4().hex[:12]}@example.com"),
        name=name,
        role=role,
        password_hash=_hashed_passwords[password],
    )
    async with container.identity_uow() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user.id, bearer(container, role=role, user_id=user.id)

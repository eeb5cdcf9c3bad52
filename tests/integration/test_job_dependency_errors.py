"""A worker job that fails on PostgreSQL or Redis counts in ``shop_dependency_errors_total``,
labelled with the service, as an HTTP request answered 503 does."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from shop.adapters.metrics.prometheus import PrometheusExposition
from shop.adapters.outages import dependency_of
from shop.bootstrap import Container
from shop.config import Settings
from shop.entrypoints.workers import build_worker, observe_sale
from tests.metrics_text import value


def _dead_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _errors(dependency: str) -> float:
    text = PrometheusExposition().render(None).decode()
    return value(text, "shop_dependency_errors_total", dependency=dependency)


@asynccontextmanager
async def _sale_observation_of(
    settings: Settings, *, queue: Settings
) -> AsyncIterator[Callable[[], Awaitable[object]]]:
    """The worker's own ``observe_sale`` cron job (as ``build_worker`` wraps it), with the
    context its start-up builds over ``settings``; the job queue is on ``queue``'s Redis."""
    container = Container.build(settings)
    worker = build_worker(queue, container=container, functions=[])
    for startup in worker.startup or ():
        await startup(worker.context)
    (cron,) = [c for c in worker.cron_jobs if c.function.__name__ == observe_sale.__name__]
    try:
        yield lambda: cron.function(worker.context)
    finally:
        await worker.queue.disconnect()
        await container.close()


@pytest.mark.parametrize(
    ("broken", "dependency"),
    [("redis_url", "redis"), ("database_url", "postgres")],
)
async def test_a_job_failing_on_a_backing_service_is_counted_under_it(
    clean: Container, broken: str, dependency: str
) -> None:
    dead = _dead_port()
    url = f"redis://127.0.0.1:{dead}/0"
    if broken == "database_url":
        url = f"postgresql+asyncpg://shop:shop@127.0.0.1:{dead}/shop"
    settings = msgspec.structs.replace(clean.settings, **{broken: url})
    before = _errors(dependency)
    async with _sale_observation_of(settings, queue=clean.settings) as run:
        with pytest.raises(Exception) as failure:
            await run()
    assert dependency_of(failure.value) == dependency, repr(failure.value)
    assert _errors(dependency) - before == 1


async def test_a_job_that_succeeds_counts_no_dependency_error(clean: Container) -> None:
    before = {d: _errors(d) for d in ("postgres", "redis", "other")}
    async with _sale_observation_of(clean.settings, queue=clean.settings) as run:
        await run()
    assert {d: _errors(d) for d in before} == before


async def test_a_refused_connection_is_blamed_on_the_client_that_opened_it() -> None:
    """asyncpg and redis-py let a bare ``OSError`` escape: its traceback names the client."""
    dead = _dead_port()
    with pytest.raises(OSError) as postgres:
        await asyncpg.connect(host="127.0.0.1", port=dead, timeout=5)
    assert dependency_of(postgres.value) == "postgres"
    client = Redis(host="127.0.0.1", port=dead)
    try:
        with pytest.raises(Exception) as redis:
            await client.ping()  # type: ignore[misc]  # redis-py types ping as sync | async
    finally:
        await client.aclose()
    assert dependency_of(redis.value) == "redis"
    assert dependency_of(ValueError("a bug, not an outage")) is None
    assert dependency_of(OSError("no client in this traceback")) == "other"

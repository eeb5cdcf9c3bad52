"""The SAQ worker: background jobs and their cron schedule.

Jobs are thin: each borrows ports from the container the worker built at start-up and calls
one use case. The worker runs beside the API (``shop up`` starts both) and can be scaled on
its own (``python -m shop.entrypoints.workers``). Every job is safe to run twice or
concurrently on two workers: SAQ delivers at least once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from saq import CronJob, Queue, Worker
from saq.types import Context

from shop.bootstrap import Container, EmbeddedServers, require_urls, resolve_services
from shop.config import Settings, load_settings
from shop.domain.catalog.model import PopularityWeights
from shop.domain.catalog.services import refresh_popularity
from shop.logs import configure_logging, get_logger

QUEUE_NAME = "shop"
_log = get_logger("shop.worker")

JobFunction = Callable[..., Any]


def make_queue(redis_url: str) -> Queue:
    return Queue.from_url(redis_url, name=QUEUE_NAME)


def container_of(ctx: Context) -> Container:
    container: Container = ctx["container"]  # type: ignore[typeddict-item]
    return container


def cron_every(seconds: int) -> str:
    """A cron expression firing every ``seconds`` (croniter's sixth field is seconds).

    Under a minute, seconds that divide 60 are exact; longer intervals round down to whole
    minutes, whole hours, or once a day, because cron counts within the enclosing unit.
    """
    if seconds < 60:
        return f"* * * * * */{seconds}"
    if seconds < 3600:
        return f"*/{seconds // 60} * * * *"
    if seconds < 86_400:
        return f"0 */{seconds // 3600} * * *"
    return "0 0 * * *"


async def refresh_popularity_job(ctx: Context) -> int | None:
    """Recompute popularity scores and republish the top list; safe to run concurrently."""
    container = container_of(ctx)
    settings = container.settings
    changed = await refresh_popularity(
        container.catalog.scores,
        container.catalog.reads,
        container.catalog.ranking,
        weights=PopularityWeights(
            units=settings.popularity_units_weight,
            wish=settings.popularity_wish_weight,
            wish_window_seconds=settings.popularity_wish_window,
        ),
        list_size=settings.popular_list_size,
    )
    _log.info("popularity refreshed", changed=changed)
    return changed


def job_functions() -> list[JobFunction]:
    """Jobs enqueued by the app (e.g. an order's expiry at its ``pay_by``)."""
    return []


def cron_jobs(settings: Settings) -> list[CronJob[Context]]:
    """Periodic jobs; intervals come from settings so tests can run them in seconds."""
    return [
        CronJob(refresh_popularity_job, cron=cron_every(settings.popularity_refresh_interval)),
    ]


def build_worker(
    settings: Settings,
    *,
    container: Container | None = None,
    servers: EmbeddedServers | None = None,
    functions: Sequence[JobFunction] | None = None,
    crons: Sequence[CronJob[Context]] | None = None,
    concurrency: int = 10,
) -> Worker[Context]:
    """A worker on the settings' Redis. Tests pass their own container to share connections."""
    _, redis_url = require_urls(settings)
    owned = container is None

    async def startup(ctx: Context) -> None:
        ctx["container"] = container or Container.build(settings)  # type: ignore[typeddict-unknown-key]
        _log.info("worker started", queue=QUEUE_NAME)

    async def shutdown(ctx: Context) -> None:
        if owned:
            await container_of(ctx).close()
        if servers is not None:
            servers.stop()

    return Worker(
        make_queue(redis_url),
        functions=list(job_functions() if functions is None else functions),
        cron_jobs=list(cron_jobs(settings) if crons is None else crons),
        startup=startup,
        shutdown=shutdown,
        concurrency=concurrency,
    )


async def _serve(settings: Settings, servers: EmbeddedServers) -> None:
    worker = build_worker(settings, servers=servers)
    await worker.queue.connect()
    try:
        await worker.start()
    finally:
        await worker.queue.disconnect()


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    resolved, servers = resolve_services(settings)
    asyncio.run(_serve(resolved, servers))


if __name__ == "__main__":
    main()

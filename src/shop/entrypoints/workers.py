"""The SAQ worker: background jobs and their cron schedule.

Jobs are thin: each borrows ports from the container the worker built at start-up and calls
one use case. The worker runs beside the API (``shop up`` starts both) and can be scaled on
its own (``python -m shop.entrypoints.workers``). Every job is safe to run twice or
concurrently on two workers: SAQ delivers at least once.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from saq import CronJob, Queue, Worker
from saq.types import Context

from shop.bootstrap import (
    QUEUE_NAME,
    Container,
    EmbeddedServers,
    dependency_of,
    make_job_queue,
    require_urls,
    resolve_services,
    serve_worker_metrics,
    start_tracing,
    traced_job,
    tracing_requested,
    untraced_job,
)
from shop.config import Settings, load_settings
from shop.domain.drops import services as drop_services
from shop.domain.observation import services as observation
from shop.logs import configure_logging, get_logger

_log = get_logger("shop.worker")
_drops_log = get_logger("shop.drops.room")

JobFunction = Callable[..., Any]


def make_queue(redis_url: str) -> Queue:
    return make_job_queue(redis_url)


def container_of(ctx: Context) -> Container:
    container: Container = ctx["container"]  # type: ignore[typeddict-item]
    return container


async def expire_order(ctx: Context, *, order_id: str) -> bool:
    """One order's expiry, as earlier versions enqueued it at every order's ``pay_by``.
    Nothing enqueues it any more (``expire_due_orders`` expires orders), but jobs already in
    Redis at an upgrade run under this name (``EXPIRE_ORDER_JOB``) and must find it
    registered; running one after the sweep is harmless (``expire_order`` is idempotent)."""
    c = container_of(ctx)
    expired = await c.order_cases.expire(uuid.UUID(order_id))
    if expired:
        c.observer.orders_expired(1)
    return expired


async def expire_due_orders(ctx: Context) -> int:
    """Expire the unpaid orders whose ``pay_by`` has passed, every ``order_expiry_interval``.
    Safe beside itself: SAQ's cron key keeps one run in this queue at a time, and two workers'
    runs that overlap anyway are decided per order under its row lock."""
    c = container_of(ctx)
    expired = await c.order_cases.expire_due()
    c.observer.orders_expired(expired)
    if expired:
        _log.info("expired unpaid orders", count=expired)
    return expired


async def release_stock_of_closed_orders(ctx: Context) -> int:
    """Finish stock releases that failed after a cancel or expiry was committed."""
    released = await container_of(ctx).order_cases.release_closed()
    if released:
        _log.info("released stock of closed orders", count=released)
    return released


async def resend_pending_refunds(ctx: Context) -> int:
    """Ask the gateway again for refunds it has not answered (the first ask may have been
    lost after its commit)."""
    container = container_of(ctx)
    after = timedelta(seconds=container.settings.refund_resend_after)
    resent = await container.payment_cases.resend_refunds(after)
    if resent:
        _log.info("refunds asked again", count=resent)
    return resent


async def refresh_popularity_job(ctx: Context) -> int | None:
    """Recompute popularity scores and republish the top list; safe to run concurrently."""
    changed = await container_of(ctx).refresh_popularity()
    _log.info("popularity refreshed", changed=changed)
    return changed


async def sync_stock(ctx: Context) -> int:
    """Write the Redis counters back to option.stock (a no-op unless counter is active)."""
    c = container_of(ctx)
    synced = await c.stock_operations.sync()
    c.observer.stock_synced(synced, c.clock.now().timestamp())
    return synced


async def observe_sale(ctx: Context) -> int:
    """Read the ledger for the options on sale: the gauges of /metrics and the dashboard
    read this snapshot, so neither ever queries the ledger itself."""
    c = container_of(ctx)
    ports = c.observation
    snapshot = await observation.observe_sale(
        options=ports.options,
        drops=ports.drops,
        tally=ports.tally,
        operations=c.stock_operations,
        snapshots=ports.snapshots,
        observer=ports.observer,
        clock=c.clock,
    )
    return len(snapshot.options)


async def sweep_reservations(ctx: Context) -> dict[str, int]:
    """Settle reservations left behind by requests that never finished (see the use case)."""
    container = container_of(ctx)
    outcome = await container.stock_cases.sweep()
    container.observer.reservations_swept(outcome)
    summary = {
        "confirmed": len(outcome.confirmed),
        "released": len(outcome.released),
        "retired": len(outcome.retired),
    }
    if outcome.released or outcome.confirmed:
        _log.info("reservations swept", **summary)
    return summary


async def deliver_sandbox_webhook(ctx: Context, *, body: str) -> int:
    """The sandbox gateway's side: POST one signed event to the shop's webhook. Raises on
    any answer but 2xx, so SAQ retries it with backoff (the gateway enqueues it by name,
    ``SANDBOX_WEBHOOK_JOB``)."""
    return await container_of(ctx).webhook_delivery.deliver(body)


async def refresh_waiting_rooms(ctx: Context) -> int:
    """Republish rooms Redis lost (reported as errors) and refresh what each drop has left."""
    return await republish_waiting_rooms(container_of(ctx))


async def republish_waiting_rooms(container: Container) -> int:
    """The worker's job, also run by each app process as it starts: the waiting room can then
    tell an unknown drop (404) from one Redis lost (503) before the worker's first run."""
    lost = await drop_services.refresh_waiting_rooms(
        drops=container.drops, room=container.room, stock=container.stock, clock=container.clock
    )
    for drop_id in lost:
        _drops_log.error("waiting room lost with Redis: its queue was emptied", drop_id=drop_id)
    return len(lost)


def counted_job(function: JobFunction) -> JobFunction:
    """A job whose failures on PostgreSQL or Redis are counted
    (``shop_dependency_errors_total``), as an HTTP request's outage is: a sweep or an expiry
    failing every second is an outage too, even though no client ever sees a 503. The error
    still propagates, so SAQ records and retries the job as before."""

    @functools.wraps(function)
    async def run(ctx: Context, **kwargs: Any) -> Any:
        try:
            return await function(ctx, **kwargs)
        except Exception as exc:
            dependency = dependency_of(exc)
            container = ctx.get("container")
            if dependency is not None and isinstance(container, Container):
                container.observer.dependency_error(dependency)
            raise

    return run


def job_functions() -> list[JobFunction]:
    """Jobs enqueued by name: the sandbox's webhook deliveries, and earlier versions' per-order
    expiry jobs (still in Redis after an upgrade)."""
    return [expire_order, deliver_sandbox_webhook]


def every(seconds: float) -> str:
    """A cron expression firing about every ``seconds`` (croniter's sixth field is seconds);
    rounded to what cron can express: whole seconds below a minute, whole minutes below an
    hour, whole hours beyond."""
    whole = max(1, round(seconds))
    if whole < 60:
        return f"* * * * * */{whole}"
    if whole < 3600:
        return f"*/{max(1, round(whole / 60))} * * * *"
    return f"0 */{min(23, max(1, round(whole / 3600)))} * * *"


def cron_jobs(settings: Settings) -> list[CronJob[Context]]:
    """Periodic jobs; intervals come from settings so tests can run them in seconds."""
    sweep = every(settings.order_sweep_interval)
    timeout = max(60, round(settings.order_sweep_interval))
    return [
        CronJob(expire_due_orders, cron=every(settings.order_expiry_interval), timeout=60),
        CronJob(release_stock_of_closed_orders, cron=sweep, timeout=timeout),
        CronJob(resend_pending_refunds, cron=sweep, timeout=timeout),
        CronJob(refresh_popularity_job, cron=every(settings.popularity_refresh_interval)),
        CronJob(sync_stock, cron=every(settings.stock_sync_interval), timeout=60),
        CronJob(sweep_reservations, cron=every(settings.stock_sweep_interval), timeout=300),
        CronJob(refresh_waiting_rooms, cron=every(settings.drop_room_refresh_interval), timeout=60),
        CronJob(observe_sale, cron=every(settings.sale_snapshot_interval), timeout=30),
    ]


def build_worker(
    settings: Settings,
    *,
    container: Container | None = None,
    servers: EmbeddedServers | None = None,
    functions: Sequence[JobFunction] | None = None,
    crons: Sequence[CronJob[Context]] | None = None,
    concurrency: int = 10,
    tracing: bool | None = None,
) -> Worker[Context]:
    """A worker on the settings' Redis. Tests pass their own container to share connections.

    ``tracing`` (default: asked for by ``OTEL_*``) puts a span around every job run.
    """
    _, redis_url = require_urls(settings)
    owned = container is None
    traced = tracing_requested() if tracing is None else tracing
    jobs = [counted_job(job) for job in (job_functions() if functions is None else functions)]
    schedule = list(cron_jobs(settings) if crons is None else crons)
    for cron in schedule:
        cron.function = counted_job(cron.function)
    if traced:
        jobs = [traced_job(job) for job in jobs]
        for cron in schedule:
            quiet = cron.function.__name__ == observe_sale.__name__
            cron.function = (untraced_job if quiet else traced_job)(cron.function)

    async def startup(ctx: Context) -> None:
        ctx["container"] = container or Container.build(settings, tracing=traced)  # type: ignore[typeddict-unknown-key]
        _log.info("worker started", queue=QUEUE_NAME)

    async def shutdown(ctx: Context) -> None:
        if owned:
            await container_of(ctx).close()
        if servers is not None:
            servers.stop()

    return Worker(
        make_queue(redis_url),
        functions=jobs,
        cron_jobs=schedule,
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
    if tracing_requested():
        start_tracing("shop-worker")
    if settings.worker_metrics_port is not None:
        serve_worker_metrics(settings.worker_metrics_port)
    resolved, servers = resolve_services(settings)
    asyncio.run(_serve(resolved, servers))


if __name__ == "__main__":
    main()

"""Calling a worker job directly, with the context the worker itself would hand it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from saq.types import Context

from shop.bootstrap import Container
from shop.entrypoints.workers import build_worker


@asynccontextmanager
async def job_context(container: Container) -> AsyncIterator[Context]:
    """A worker over ``container`` that is never started: its context, filled by the worker's
    own start-up hooks (which put the container there), is what a job receives in production.
    The worker's queue is closed afterwards; it never polls, so no job runs but the caller's."""
    worker = build_worker(container.settings, container=container, functions=[], crons=[])
    for startup in worker.startup or ():
        await startup(worker.context)
    try:
        yield worker.context
    finally:
        await worker.queue.disconnect()

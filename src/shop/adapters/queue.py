"""SAQ-backed job scheduling: the ``ExpiryScheduler`` port on the shop's Redis queue.

The app's queue rides on the container's Redis client: it connects lazily (redis-py opens a
connection on the first command), so building a container touches no server, and closing that
client (``Container.close``) closes the queue's connections. (``Queue.disconnect`` would first
unsubscribe SAQ's pub/sub channel, which needs a live Redis and fails during an outage.)
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime

from redis.asyncio import Redis
from saq import Queue
from saq.queue.redis import RedisQueue

QUEUE_NAME = "shop"
# The worker registers a job function under this name (entrypoints/workers.py).
EXPIRE_ORDER_JOB = "expire_order"


def make_job_queue(redis_url: str) -> Queue:
    """A queue with its own connections (the worker's: it blocks on dequeue)."""
    return Queue.from_url(redis_url, name=QUEUE_NAME)


def job_queue_on(redis: Redis) -> Queue:
    """A queue sharing an existing client (the app's: it only enqueues)."""
    return RedisQueue(redis, name=QUEUE_NAME)


class SaqExpiryScheduler:
    """Enqueues ``expire_order`` scheduled at the order's ``pay_by``.

    The job key is derived from the order id, so scheduling twice (a replayed purchase)
    enqueues once. SAQ schedules in whole epoch seconds: rounding up means the job never runs
    before the deadline on this clock. A job lost with Redis is the sweep's business.
    """

    def __init__(self, queue: Queue, *, retries: int = 3, retry_delay: float = 1.0) -> None:
        self._queue = queue
        self._retries = retries
        self._retry_delay = retry_delay

    async def expire_at(self, order_id: uuid.UUID, when: datetime) -> None:
        await self._queue.enqueue(
            EXPIRE_ORDER_JOB,
            key=f"expire:{order_id}",
            scheduled=math.ceil(when.timestamp()),
            retries=self._retries,
            retry_delay=self._retry_delay,
            retry_backoff=True,
            order_id=str(order_id),
        )

"""The shop's SAQ queue on Redis: the worker consumes it; the app enqueues the sandbox
gateway's webhook deliveries on it.

The app's queue rides on the container's Redis client: it connects lazily (redis-py opens a
connection on the first command), so building a container touches no server, and closing that
client (``Container.close``) closes the queue's connections. (``Queue.disconnect`` would first
unsubscribe SAQ's pub/sub channel, which needs a live Redis and fails during an outage.)
"""

from __future__ import annotations

from redis.asyncio import Redis
from saq import Queue
from saq.queue.redis import RedisQueue

QUEUE_NAME = "shop"
# The job earlier versions enqueued per order at its pay_by (orders now expire by the worker's
# sweep). The worker still registers a function under this name (entrypoints/workers.py), so
# that jobs left in Redis by an earlier version run after an upgrade instead of failing.
EXPIRE_ORDER_JOB = "expire_order"


def make_job_queue(redis_url: str) -> Queue:
    """A queue with its own connections (the worker's: it blocks on dequeue)."""
    return Queue.from_url(redis_url, name=QUEUE_NAME)


def job_queue_on(redis: Redis) -> Queue:
    """A queue sharing an existing client (the app's: it only enqueues)."""
    return RedisQueue(redis, name=QUEUE_NAME)

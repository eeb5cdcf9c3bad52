"""Which backing service an exception came from, for ``shop_dependency_errors_total``.

The HTTP error mapping (an outage answered ``503``) and the worker's jobs (a job that failed)
count failures of PostgreSQL and Redis under the same ``dependency`` label, so the rule
naming the culprit lives here, once. A driver's own exception types say it directly. A bare
``OSError`` (a refused connection, a reset socket) does not: asyncpg and redis-py both let
it escape as it is. Its traceback does, though: the deepest frame of a driver's code is where
the socket failed.
"""

from __future__ import annotations

import traceback

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from shop.domain.observation.ports import Dependency

# Module prefixes of each dependency's client code, checked on the traceback's frames.
_CLIENTS: tuple[tuple[str, Dependency], ...] = (
    ("redis", "redis"),
    ("saq", "redis"),  # the job queue lives in Redis
    ("asyncpg", "postgres"),
    ("sqlalchemy", "postgres"),
    ("psycopg", "postgres"),
)


def _client_of(module: str) -> Dependency | None:
    for prefix, dependency in _CLIENTS:
        if module == prefix or module.startswith(prefix + "."):
            return dependency
    return None


def _raised_in(exc: BaseException) -> Dependency | None:
    """The client whose code is deepest in ``exc``'s traceback (None if none is there)."""
    found: Dependency | None = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        found = _client_of(str(frame.f_globals.get("__name__", ""))) or found
    return found


def dependency_of(exc: BaseException) -> Dependency | None:
    """``postgres`` or ``redis`` for an error of that service's client, ``other`` for a
    network failure no client can be blamed for, ``None`` for anything else (a bug, a
    refused input): those are not dependency errors and must not inflate the count."""
    if isinstance(exc, RedisError):
        return "redis"
    if isinstance(exc, SQLAlchemyError) or type(exc).__module__.startswith("asyncpg"):
        return "postgres"
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return _raised_in(exc) or "other"
    return None

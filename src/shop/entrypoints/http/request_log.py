"""The one raw ASGI wrapper every response passes through: request id, access-log line,
request-duration histogram and security headers.

One wrapper, not one per concern, because it sits in front of every purchase: each wrapper
of ``send`` copies the response's header list, and the log line and the histogram need the
same two facts (status, duration), so they are measured once. Raw ASGI (no body buffering,
no per-request objects beyond a dict) so the hot path pays microseconds for all of it.

The histogram is labelled with the route *template* Litestar's router left in the scope
(``/api/orders/{order_id:uuid}``, never the raw path, so the label set stays bounded);
unmatched paths count under ``route="unmatched"``.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Callable

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from shop.domain.observation.ports import SaleObserver
from shop.entrypoints.http.security_headers import with_security_headers

REQUEST_ID_HEADER = b"x-request-id"
UNMATCHED = "unmatched"
_log = structlog.get_logger("shop.http")


class RequestIds:
    """Ids unique across processes without a random draw per request: 48 random bits drawn
    once per process (again in a forked child) and a counter. Not secret, only distinct."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._sequence = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._sequence):010x}"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            # Accept a caller's id only if it is short and printable: it ends up in our logs.
            if 0 < len(candidate) <= 128 and candidate.isprintable():
                return candidate
    return None


def request_log_middleware(
    app: ASGIApp,
    observer_of: Callable[[], SaleObserver | None] = lambda: None,
    *,
    sample: float = 1.0,
    slow_seconds: float = 0.5,
) -> ASGIApp:
    """``observer_of()`` returns the process's ``SaleObserver`` once the lifespan built it.

    ``sample`` is the share of access lines written for requests that succeeded (status below
    400) within ``slow_seconds``; errors and slow requests are always written. At INFO a
    rendered line costs more than the rest of this wrapper, so a busy shop may sample them;
    the duration histogram still sees every request."""
    ids = RequestIds()
    bind, reset = structlog.contextvars.bind_contextvars, structlog.contextvars.reset_contextvars
    draw = random.random

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or ids.next()
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((REQUEST_ID_HEADER, request_id.encode("latin-1")))
                message = {**message, "headers": with_security_headers(headers)}
            await send(message)

        bound = bind(request_id=request_id)
        try:
            await app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            if status >= 400 or elapsed >= slow_seconds or sample >= 1.0 or draw() < sample:
                _log.info(
                    "request",
                    method=scope.get("method"),
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )
            reset(**bound)
            observer = observer_of()
            if observer is not None:
                observer.request_served(
                    scope.get("path_template") or UNMATCHED,
                    scope.get("method", "GET"),
                    status,
                    elapsed,
                )

    return middleware

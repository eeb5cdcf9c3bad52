"""``GET /metrics`` (Prometheus text format) and the request-duration middleware.

The middleware is raw ASGI around the whole app, like the request log: it reads the route
*template* Litestar's router left in the scope (``/api/orders/{order_id:uuid}``, never the
raw path, so the label set stays bounded) and pays one clock read and one histogram update
per request. Unmatched paths count under ``route="unmatched"``.

``/metrics`` is never throttled (a scraper must not get itself blocked) and, when
``SHOP_METRICS_TOKEN`` is set, needs ``Authorization: Bearer <that token>``.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from shop.bootstrap import Container
from shop.domain.errors import Unauthorized
from shop.domain.observation.ports import SaleObserver

UNMATCHED = "unmatched"


def metrics_middleware(app: ASGIApp, observer_of: Any) -> ASGIApp:
    """``observer_of()`` returns the process's ``SaleObserver`` once the lifespan built it."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_and_watch)
        finally:
            observer: SaleObserver | None = observer_of()
            if observer is not None:
                observer.request_served(
                    scope.get("path_template") or UNMATCHED,
                    scope.get("method", "GET"),
                    status,
                    time.perf_counter() - started,
                )

    return middleware


def _authorised(request: Request[Any, Any, Any], token: str | None) -> bool:
    if token is None:
        return True
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


@get(
    "/metrics",
    operation_id="Metrics",
    summary="Prometheus metrics (text format); Bearer SHOP_METRICS_TOKEN when set",
    tags=["operations"],
    exclude_from_auth=True,
    cache=False,
    media_type=MediaType.TEXT,
)
async def metrics(
    request: Request[Any, Any, Any], container: NamedDependency[Container]
) -> Response[bytes]:
    if not _authorised(request, container.settings.metrics_token):
        raise Unauthorized("send Authorization: Bearer <SHOP_METRICS_TOKEN>")
    ports = container.observation
    latest = await ports.snapshots.recent(1)
    body = ports.exposition.render(latest[0] if latest else None)
    return Response(body, media_type=ports.exposition.content_type)

"""``GET /metrics`` (Prometheus text format).

Request durations are observed by the request log's wrapper (``request_log.py``), which
measures each request once for the log line and the histogram alike.

``/metrics`` is never throttled (a scraper must not get itself blocked) and, when
``SHOP_METRICS_TOKEN`` is set, needs ``Authorization: Bearer <that token>``.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.di import NamedDependency

from shop.bootstrap import Container
from shop.domain.errors import Unauthorized
from shop.entrypoints.http.auth import bearer_token


def _authorised(request: Request[Any, Any, Any], token: str | None) -> bool:
    if token is None:
        return True
    presented = bearer_token(request.headers.get("authorization", ""))
    return presented is not None and hmac.compare_digest(presented.encode(), token.encode())


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

"""A JSON error answered straight from raw ASGI middleware, in the shop's error shape.

The guards that run before Litestar decodes anything (``body_guard``, ``query_guard``) cannot
raise into Litestar's exception handlers for every case, so they answer themselves; this is
the one way they do it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.types import Send


async def send_json_error(send: Send, status: int, body: Any) -> None:
    """Answer ``status`` with ``body`` (a dict or msgspec struct) as JSON, and finish."""
    payload = msgspec.json.encode(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})

"""Unknown query parameters are refused (400), as unknown body fields are (422).

A misspelt ``?categroy_id=3`` would otherwise list every product as if no filter had been
asked for, and the OpenAPI document, which lists each operation's parameters, would not be
the whole truth. The names each handler accepts are recorded once by
``openapi.document_operations`` (``QUERY_NAMES`` in the handler's ``opt``); a handler without
that record (Litestar's own schema routes) is not checked.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from shop.entrypoints.http.raw_response import send_json_error

QUERY_NAMES = "shop.query_names"


def unknown_query_parameters(query_string: bytes, allowed: frozenset[str]) -> list[str]:
    names = {name for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)}
    return sorted(names - allowed)


def query_guard(app: ASGIApp) -> ASGIApp:
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        allowed = getattr(handler, "opt", {}).get(QUERY_NAMES)
        query = scope.get("query_string", b"")
        if scope["type"] == ScopeType.HTTP and query and allowed is not None:
            unknown = unknown_query_parameters(query, allowed)
            if unknown:
                detail = f"unknown query parameter(s): {', '.join(unknown)}"
                await send_json_error(
                    send,
                    400,
                    {"status_code": 400, "detail": detail, "extra": {"parameters": unknown}},
                )
                return
        await app(scope, receive, send)

    return guarded

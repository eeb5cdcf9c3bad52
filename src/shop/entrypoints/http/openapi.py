"""The OpenAPI document tells the truth: every status an operation can answer, with the one
error body, the bearer scheme where a token is needed, and "no unknown fields" where bodies
refuse them.

Most of it is derived, not written by hand: ``document_operations`` walks every route handler
of the built app once and attaches the statuses that follow from how the handler is mounted:

| what the handler has                        | statuses added                  |
| ------------------------------------------- | ------------------------------- |
| any operation                               | 503 (a backing service is down) |
| anything but ``/health`` and ``/ready``     | 429 (the throttle)              |
| parameters or a body                        | 400, 422                        |
| a body                                      | 413                             |
| a path parameter                            | 404                             |
| authentication (not ``exclude_from_auth``)  | 401, and ``security: bearer``   |
| a guard (``requires_admin``…)               | 403                             |

What only the use case knows (409 when sold out, 403 for a wrong current password, a second
success status) the handler declares itself in one line, ``responses=raises(409)`` or
``responses=raises(409, also=(200, OrderOut))``; its own declarations win over derived ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute
from litestar.typing import FieldDefinition

from shop.entrypoints.http.auth import PUBLIC_PATHS
from shop.entrypoints.http.throttle import NEVER_THROTTLED

BEARER = "bearer"
COMPONENTS = Components(
    security_schemes={
        BEARER: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description="The access_token of POST /api/auth/login or /api/auth/refresh",
        )
    }
)


class ErrorBody(msgspec.Struct):
    """Every error the shop answers has this shape (``entrypoints/http/errors.py``)."""

    status_code: int
    detail: str
    extra: Any = msgspec.UNSET


DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request: not JSON, not UTF-8, nested too deep, or a cursor this server "
    "did not issue",
    401: "No valid access token, or its account no longer exists",
    403: "Not allowed for this caller",
    404: "No such resource (or not yours)",
    409: "Conflicts with the current state (sold out, taken, not in a state that allows it)",
    413: "Request body too large",
    422: "Well-formed but invalid values; extra names the field",
    429: "Too many requests; retry after Retry-After seconds",
    503: "A backing service is unavailable; retry after Retry-After seconds",
}


def _error(status: int) -> ResponseSpec:
    return ResponseSpec(
        data_container=ErrorBody,
        description=DESCRIPTIONS.get(status, "Error"),
        generate_examples=False,
    )


def raises(*statuses: int, also: tuple[int, Any] | None = None) -> dict[int, ResponseSpec]:
    """A handler's own declaration: the error statuses its use case can answer, and an
    optional second success status with its body type (``also=(200, OrderOut)``)."""
    specs = {status: _error(status) for status in statuses}
    if also is not None:
        status, body = also
        specs[status] = ResponseSpec(
            data_container=body, description="Success", generate_examples=False
        )
    return specs


_NEVER_THROTTLED = tuple(re.compile(pattern) for pattern in NEVER_THROTTLED)
_NOT_PARAMETERS = frozenset({"self", "request", "state", "scope", "socket", "headers", "cookies"})


def _derived_statuses(route: HTTPRoute, handler: Any) -> set[int]:
    statuses = {503}
    if not any(pattern.match(route.path) for pattern in _NEVER_THROTTLED):
        statuses.add(429)
    signature = handler.parsed_fn_signature.parameters
    dependencies = set(handler.resolve_dependencies())
    inputs = set(signature) - dependencies - _NOT_PARAMETERS
    if inputs or route.path_parameters:
        statuses |= {400, 422}
    if "data" in signature:
        statuses.add(413)
    if route.path_parameters:
        statuses.add(404)
    if _needs_token(route.path, handler):
        statuses.add(401)
    if handler.resolve_guards():  # requires_admin, or any other guard: they refuse with 403
        statuses.add(403)
    return statuses


def _needs_token(path: str, handler: Any) -> bool:
    return not handler.opt.get("exclude_from_auth") and not path.startswith(PUBLIC_PATHS)


def document_operations(app: Litestar) -> None:
    """Attach the derived statuses and the security requirement to every handler, before the
    document is first built (it is built lazily, on the first request for it)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        _allow_every_method(route)
        for handler in _handlers(route):
            derived = {status: _error(status) for status in _derived_statuses(route, handler)}
            handler.responses = {**derived, **(handler.responses or {})}
            if _needs_token(route.path, handler) and not handler.security:
                handler.security = [{BEARER: []}]


def _allow_every_method(route: HTTPRoute) -> None:
    """Litestar's generated OPTIONS handler answers ``Allow`` from the route object it was
    made for; when a second handler joins the path (PUT then DELETE on ``/api/wishes/{id}``)
    the route is rebuilt but the handler keeps the old one, and ``Allow`` omits DELETE. Point
    it at the final route, so ``Allow`` lists every method the path serves."""
    for handler in route.route_handlers:
        fn = getattr(handler, "fn", None)
        closure = getattr(fn, "__closure__", None) or ()
        names = getattr(getattr(fn, "__code__", None), "co_freevars", ())
        if (
            handler.handler_name == "options_handler"
            and names == ("self",)
            and closure
            and isinstance(closure[0].cell_contents, HTTPRoute)
        ):
            closure[0].cell_contents = route


def _handlers(route: HTTPRoute) -> Iterable[Any]:
    seen: set[int] = set()
    for handler in route.route_handlers:
        if id(handler) not in seen and handler.resolve_include_in_schema():
            seen.add(id(handler))
            yield handler


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """A struct that refuses unknown fields (``forbid_unknown_fields=True``) says so in its
    schema: ``additionalProperties: false``, so clients and fuzzers send only what counts."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        if not super().is_plugin_supported_field(field_definition):
            return False
        return bool(getattr(field_definition.type_, "__struct_config__", None)) and bool(
            field_definition.type_.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Any:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema

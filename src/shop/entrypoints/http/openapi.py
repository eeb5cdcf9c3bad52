"""The OpenAPI document tells the truth: every status an operation can answer, with the one
error body, the bearer scheme where a token is needed, and "no unknown fields" where bodies
refuse them.

Most of it is derived, not written by hand: ``document_operations`` walks every route handler
of the built app once and attaches the statuses that follow from how the handler is mounted:

- any operation: 400 (an unknown query parameter, ``query_guard``), 503 (a backing
  service is down);
- anything but ``/health`` and ``/ready``: 429 (the throttle);
- parameters or a body: 422 (and 400 for a malformed body or a bad cursor);
- a body: 413;
- a path parameter, or a body field named ``…_id``/``…_ids``: 404;
- authentication (not ``exclude_from_auth``): 401, and ``security: [{bearer: []}]``;
- a guard (``requires_admin``…): 403.

Request bodies are documented by msgspec itself (``msgspec.json.schema_components``), the
same library that validates them: every bound, pattern and ``additionalProperties: false``
(``forbid_unknown_fields``) in the document is the one enforced, including inside optional
fields and list items where Litestar's own generator drops them. Strings without a pattern
are declared NUL-free, as the body guard enforces.

What only the use case knows (409 when sold out, 403 for a wrong current password, a second
success status) the handler declares itself in one line, ``responses=raises(409)`` or
``responses=raises(409, also=(200, OrderOut))``; its own declarations win over derived ones.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, cast

import msgspec
from litestar import Litestar, Request
from litestar.enums import OpenAPIMediaType
from litestar.openapi import ResponseSpec
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import BodyKwarg, HeaderParameter, ParameterKwarg, QueryParameter
from litestar.routes import HTTPRoute

from shop.entrypoints.http.auth import PUBLIC_PATHS
from shop.entrypoints.http.bounds import TEXT
from shop.entrypoints.http.query_guard import QUERY_NAMES
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


_NOT_PARAMETERS = frozenset({"self", "request", "state", "scope", "socket", "headers", "cookies"})


def _derived_statuses(route: HTTPRoute, handler: Any) -> set[int]:
    statuses = {400, 503}  # 400: an unknown query parameter (``query_guard``)
    if route.path not in NEVER_THROTTLED:
        statuses.add(429)
    signature = handler.parsed_fn_signature.parameters
    dependencies = set(handler.resolve_dependencies())
    inputs = set(signature) - dependencies - _NOT_PARAMETERS
    if inputs or route.path_parameters:
        statuses.add(422)
    if "data" in signature:
        statuses.add(413)
    data = signature.get("data")
    if route.path_parameters or (data is not None and _names_ids(data.annotation)):
        statuses.add(404)
    if _needs_token(route.path, handler):
        statuses.add(401)
    if handler.resolve_guards():  # requires_admin, or any other guard: they refuse with 403
        statuses.add(403)
    return statuses


def _query_names(route: HTTPRoute, handler: Any) -> frozenset[str]:
    """The query parameters the handler takes (what the document lists for it)."""
    dependencies = set(handler.resolve_dependencies())
    names = set()
    for name, field in handler.parsed_fn_signature.parameters.items():
        kwarg = field.kwarg_definition
        if name in dependencies or name in _NOT_PARAMETERS or name == "data":
            continue
        if name in route.path_parameters or isinstance(kwarg, BodyKwarg):
            continue
        if isinstance(kwarg, ParameterKwarg):
            if kwarg.header or kwarg.cookie or isinstance(kwarg, HeaderParameter):
                continue
            names.add(
                kwarg.query or (kwarg.name if isinstance(kwarg, QueryParameter) else None) or name
            )
        else:
            names.add(name)
    return frozenset(names)


def _names_ids(body: Any) -> bool:
    """A body with an ``…_id``/``…_ids`` field names other resources: one may not exist."""
    if not (isinstance(body, type) and issubclass(body, msgspec.Struct)):
        return False
    _, components = msgspec.json.schema_components([body])
    return any(
        name.endswith(("_id", "_ids"))
        for schema in components.values()
        for name in schema.get("properties", {})
    )


def _needs_token(path: str, handler: Any) -> bool:
    return not handler.opt.get("exclude_from_auth") and not path.startswith(PUBLIC_PATHS)


def document_operations(app: Litestar) -> None:
    """Attach the derived statuses and the security requirement to every handler, before the
    document is first built (it is built lazily, on the first request for it), and remember
    the request body types for ``openapi_document``."""
    bodies: list[type] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        _allow_every_method(route)
        for handler in _handlers(route):
            data = handler.parsed_fn_signature.parameters.get("data")
            body = None if data is None else data.annotation
            if isinstance(body, type) and issubclass(body, msgspec.Struct):
                bodies.append(body)
            handler.opt[QUERY_NAMES] = _query_names(route, handler)
            derived = {status: _error(status) for status in _derived_statuses(route, handler)}
            handler.responses = {**derived, **(handler.responses or {})}
            if _needs_token(route.path, handler) and not handler.security:
                handler.security = [{BEARER: []}]
    app.state[_BODIES] = bodies


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


_DOCUMENT = "shop.openapi_document"
_BODIES = "shop.openapi_bodies"


def openapi_document(app: Litestar) -> dict[str, Any]:
    """Litestar's document with every request body schema replaced by msgspec's; built once
    per app, on first use."""
    cached = app.state.get(_DOCUMENT)
    if cached is not None:
        return cast("dict[str, Any]", cached)
    document = copy.deepcopy(app.openapi_schema.to_schema())
    bodies = app.state.get(_BODIES) or []
    if bodies:
        _, components = msgspec.json.schema_components(
            bodies, ref_template="#/components/schemas/{name}"
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in components.items():
            _no_nul(schema)
            schemas[name] = schema
    app.state[_DOCUMENT] = document
    return document


def _no_nul(schema: Any) -> None:
    if isinstance(schema, list):
        for item in schema:
            _no_nul(item)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not {"pattern", "enum", "format"} & set(schema):
        schema["pattern"] = TEXT
    for value in schema.values():
        if isinstance(value, dict | list):
            _no_nul(value)


class TruthfulOpenAPIJson(OpenAPIRenderPlugin):
    """Serves ``/schema/openapi.json`` from ``openapi_document`` instead of Litestar's own."""

    def __init__(self) -> None:
        super().__init__(path="/openapi.json", media_type=OpenAPIMediaType.OPENAPI_JSON)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return msgspec.json.encode(openapi_document(request.app))

"""One JSON error body for every failure: ``{"status_code", "detail", "extra"?}``.

Registered once on the app. Controllers never catch domain errors; they propagate here and
become the status their family stands for. Infrastructure outages (PostgreSQL or Redis gone)
become 503 with ``Retry-After``: the client may retry, and nothing was half-written because
every write path runs in a transaction that rolled back.
"""

from __future__ import annotations

from typing import Any

import structlog
from asyncpg.exceptions import ConnectionDoesNotExistError as ConnectionDoesNotExist
from asyncpg.exceptions import PostgresConnectionError
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shop.adapters.db.sqlstate import sqlstate_of
from shop.adapters.outages import dependency_of
from shop.domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    MalformedRequest,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from shop.domain.paging import invalid_cursor

_log = structlog.get_logger("shop.http.errors")

STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
    (Conflict, 409),  # includes SoldOut and InvalidState
    (InvalidInput, 422),
    (MalformedRequest, 400),
    (TooManyRequests, 429),
    (Unavailable, 503),
)


def error_response(
    status_code: int,
    detail: str,
    extra: Any = None,
    *,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"status_code": status_code, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status_code, media_type=MediaType.JSON, headers=headers)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds)))}


def domain_error_to_response(_: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    code = next((status for kind, status in STATUS if isinstance(exc, kind)), 400)
    headers = None
    if isinstance(exc, TooManyRequests | Unavailable):
        headers = _retry_after(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(code, exc.message, exc.extra or None, headers=headers)


def validation_error_to_response(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Any]:
    """Malformed bodies (not JSON at all) are 400; well-formed but invalid data is 422."""
    detail = str(exc.detail)
    if any(isinstance(item, dict) and item.get("key") == "cursor" for item in exc.extra or ()):
        # One cursor rule everywhere (``shop.domain.paging``): a cursor the server did not
        # issue, too long ones included, is a 400 naming the parameter.
        return error_response(
            400, invalid_cursor("it is too long").message, {"parameter": "cursor"}
        )
    if "decode" in detail.lower() or "malformed" in detail.lower():
        return error_response(400, f"Malformed request body: {detail}", exc.extra)
    problems = [
        f"{item['key']}: {item['message']}"
        for item in (exc.extra if isinstance(exc.extra, list) else ())
        if isinstance(item, dict) and item.get("key") and item.get("message")
    ]
    if problems:
        detail = "; ".join(problems)
    return error_response(422, f"Invalid request: {detail}", exc.extra)


def http_error_to_response(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return error_response(exc.status_code, str(exc.detail), exc.extra, headers=exc.headers)


def outage_to_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    _log.warning("dependency unavailable", error=repr(exc), path=request.url.path)
    container = getattr(request.app.state, "container", None)
    if container is not None:
        container.observer.dependency_error(dependency_of(exc) or "other")
    return error_response(
        503, "A backing service is unavailable; please retry shortly.", headers=_retry_after(1)
    )


def is_connection_failure(exc: BaseException) -> bool:
    """A lost or refused connection, as opposed to a driver refusing one statement.

    asyncpg raises ``InterfaceError`` for both (a closed connection, but also a query with
    more than 32,767 arguments): only the first is an outage worth a 503 and a retry.
    """
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    seen: BaseException | None = exc
    while seen is not None:
        for candidate in (seen, getattr(seen, "orig", None)):
            if isinstance(candidate, OSError | PostgresConnectionError | ConnectionDoesNotExist):
                return True
            if isinstance(candidate, PoolTimeoutError):
                return True
        seen = seen.__cause__ or seen.__context__
    return False


def database_error_to_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Outages are 503; a value PostgreSQL refused (SQLSTATE class 22: out of range, bad
    text) is the client's input slipping past a bound, so 422, never a 500."""
    if is_connection_failure(exc):
        return outage_to_response(request, exc)
    code = sqlstate_of(exc) or ""
    if code.startswith("22"):
        _log.warning("database refused a value", sqlstate=code, path=request.url.path)
        return error_response(422, "Invalid request: a value is outside what the shop stores")
    return unexpected_error_to_response(request, exc)


def unexpected_error_to_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return outage_to_response(request, exc)
    _log.error("unhandled error", path=request.url.path, exc_info=exc)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    DomainError: domain_error_to_response,
    ValidationException: validation_error_to_response,
    HTTPException: http_error_to_response,
    RedisConnectionError: outage_to_response,
    RedisTimeoutError: outage_to_response,
    DBAPIError: database_error_to_response,
    PoolTimeoutError: outage_to_response,
    ConnectionError: outage_to_response,
    OSError: outage_to_response,
    Exception: unexpected_error_to_response,
}

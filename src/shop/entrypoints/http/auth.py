"""Authentication middleware and guards, in the app itself (no separate gateway).

A valid ``Authorization: Bearer <jwt>`` puts a ``Principal`` on ``request.user``; handlers get
it as the ``principal`` dependency and use its ``user_id`` for every ownership check. Routes
are protected unless marked ``exclude_from_auth=True`` (auth, catalog reads, health, docs).
Admin routes carry ``guards=[requires_admin]``: 401 without a token, 403 with the wrong role.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
    DefineMiddleware,
)
from litestar.types import Scope

from shop.domain.errors import Forbidden, Unauthorized
from shop.domain.identity.model import Principal
from shop.domain.identity.ports import AccessTokens

PUBLIC_PATHS = ("/schema", "/docs")
# Where a middleware that ran earlier in this request (the throttle) leaves the principal it
# already verified, so the token's signature is checked once per request, not twice. It is
# kept with its token and only used for that very token.
VERIFIED_PRINCIPAL = "shop.verified_principal"


def remember_principal(scope: Scope, token: str, principal: Principal) -> None:
    scope.setdefault("state", {})[VERIFIED_PRINCIPAL] = (token, principal)


def _remembered_principal(scope: Scope, token: str) -> Principal | None:
    remembered = scope.get("state", {}).get(VERIFIED_PRINCIPAL)
    if isinstance(remembered, tuple) and remembered[0] == token:
        principal = remembered[1]
        return principal if isinstance(principal, Principal) else None
    return None


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    def __init__(self, app: Any, tokens: AccessTokens, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._tokens = tokens

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if not header:
            raise Unauthorized("authentication required: send Authorization: Bearer <token>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        token = token.strip()
        principal = _remembered_principal(connection.scope, token) or self._tokens.verify(token)
        return AuthenticationResult(user=principal, auth=token)


def auth_middleware(tokens: AccessTokens) -> DefineMiddleware:
    return DefineMiddleware(
        BearerAuthMiddleware,
        tokens=tokens,
        exclude=list(PUBLIC_PATHS),
        exclude_from_auth_key="exclude_from_auth",
    )


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    principal: Principal = request.user
    return principal


def requires_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise Unauthorized("authentication required")
    if not principal.is_admin:
        raise Forbidden("this action needs the admin role")

"""The bare-stack reference: Litestar on granian with nothing of the shop in it.

``shop bench`` starts this app with the same granian flags and worker count as the shop, and
drives it with the same load generator, so that "whoami costs N× a bare JWT GET" compares the
shop's middleware (throttle, auth, request log, dependency injection) against the framework and
PyJWT alone, on the same machine in the same run. ``GET /ping`` is the framework's floor;
``GET /jwt`` verifies the bearer token exactly as the shop's verifier does (HS256, issuer,
required claims), with the secret the shop signs with (``BENCH_JWT_SECRET``).
"""

from __future__ import annotations

import os
from typing import Any

import jwt
from litestar import Litestar, Request, get
from litestar.exceptions import NotAuthorizedException

_SECRET = os.environ.get("BENCH_JWT_SECRET", "")


@get("/ping", sync_to_thread=False)
def ping() -> dict[str, bool]:
    return {"ok": True}


@get("/jwt", sync_to_thread=False)
def verified(request: Request[Any, Any, Any]) -> dict[str, str]:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise NotAuthorizedException("bearer token required")
    try:
        claims = jwt.decode(
            token,
            _SECRET,
            algorithms=["HS256"],
            issuer="shop",
            leeway=5.0,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise NotAuthorizedException(str(exc)) from None
    return {"user_id": str(claims["sub"])}


app = Litestar(route_handlers=[ping, verified], debug=False)

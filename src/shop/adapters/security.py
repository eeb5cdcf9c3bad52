"""Access tokens: HS256 JWTs carrying the user id and role (pyjwt).

Verification pins the algorithm (so ``alg=none`` or a key-confusion token is refused), and
requires ``exp``, ``iat`` and ``sub``. Tokens are short-lived: revocation is the refresh
token's job, so a stolen access token is only good for minutes.
"""

from __future__ import annotations

import time
import uuid

import jwt

from shop.domain.errors import Unauthorized
from shop.domain.identity.model import Principal, Role

ALGORITHM = "HS256"
ISSUER = "shop"


class JwtAccessTokens:
    def __init__(self, secret: str, *, ttl_seconds: float, leeway_seconds: float = 5.0) -> None:
        self._secret = secret
        self._ttl = int(ttl_seconds)
        self._leeway = leeway_seconds

    def issue(self, principal: Principal) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "sub": str(principal.user_id),
            "role": principal.role.value,
            "iat": now,
            "exp": now + self._ttl,
            "iss": ISSUER,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._ttl

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
            return Principal(user_id=uuid.UUID(claims["sub"]), role=Role(claims["role"]))
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token expired") from None
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
            raise Unauthorized("invalid access token") from None

"""Access tokens: HS256 JWTs carrying the user id and role (pyjwt); password hashes (argon2).

Verification pins the algorithm (so ``alg=none`` or a key-confusion token is refused), and
requires ``exp``, ``iat`` and ``sub``. Tokens are short-lived: revocation is the refresh
token's job, so a stolen access token is only good for minutes.

A client sends the same access token with every request for its whole life, and checking its
signature and claims was a third of an authenticated request's CPU. So the verifier remembers
the last ``remember`` tokens it accepted, each with its expiry: the very same token string is
answered from memory until ``exp`` (+ leeway) and then refused as expired, exactly as a fresh
check would. Only tokens that passed the full check are remembered, so forged or garbage
tokens can neither be served from memory nor crowd it; access tokens are not revocable either
way, so remembering one changes no answer.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import argon2
import jwt

from shop.domain.errors import Unauthorized
from shop.domain.identity.model import Principal, Role

_T = TypeVar("_T")

ALGORITHM = "HS256"
ISSUER = "shop"


class JwtAccessTokens:
    def __init__(
        self,
        secret: str,
        *,
        ttl_seconds: float,
        leeway_seconds: float = 5.0,
        remember: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._ttl = int(ttl_seconds)
        self._leeway = leeway_seconds
        self._remember = remember
        self._clock = clock
        # token -> (its principal, when it stops being valid); oldest first.
        self._verified: dict[str, tuple[Principal, float]] = {}

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
        remembered = self._verified.get(token)
        if remembered is not None:
            if self._clock() < remembered[1]:
                return remembered[0]
            del self._verified[token]
            raise Unauthorized("access token expired")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
            principal = Principal(user_id=uuid.UUID(claims["sub"]), role=Role(claims["role"]))
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token expired") from None
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
            raise Unauthorized("invalid access token") from None
        if self._remember:
            if len(self._verified) >= self._remember:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = (principal, float(claims["exp"]) + self._leeway)
        return principal


class Argon2PasswordHasher:
    """argon2id (argon2-cffi), run on a small dedicated thread pool.

    Each hash takes tens of milliseconds of CPU and ``memory_kib`` of memory: done on the event
    loop it would stall every purchase in the process, and unbounded it would let a burst of
    logins exhaust memory. The pool runs at most ``max_concurrency`` at once; the rest wait.
    """

    def __init__(
        self,
        *,
        time_cost: int = argon2.DEFAULT_TIME_COST,
        memory_kib: int = argon2.DEFAULT_MEMORY_COST,
        parallelism: int = argon2.DEFAULT_PARALLELISM,
        max_concurrency: int | None = None,
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._pool = ThreadPoolExecutor(
            max_workers=max_concurrency or min(4, os.cpu_count() or 1),
            thread_name_prefix="argon2",
        )
        self._dummy_hash: str | None = None

    async def _run(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def hash(self, password: str) -> str:
        return await self._run(partial(self._hasher.hash, password))

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(partial(self._verify, password_hash, password))

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    async def waste_time(self, password: str) -> None:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except argon2.exceptions.InvalidHashError:
            return True

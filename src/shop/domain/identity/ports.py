"""Ports of the identity module. Adapters satisfy them structurally (no base classes)."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

from shop.domain.identity.model import Principal, RefreshToken, User
from shop.domain.identity.throttle import Quota


class AccessTokens(Protocol):
    """Short-lived, self-contained proof of identity (a signed JWT in production)."""

    def issue(self, principal: Principal) -> tuple[str, int]:
        """Return the token and its lifetime in seconds."""
        ...

    def verify(self, token: str) -> Principal:
        """Return who the token speaks for; raise ``Unauthorized`` if it is not valid now."""
        ...


class PasswordHasher(Protocol):
    """A slow, salted one-way hash. Async because a good one takes tens of milliseconds of
    CPU, which must not stall the event loop that serves purchases."""

    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool:
        """False for a wrong password; never raises for one."""
        ...

    async def waste_time(self, password: str) -> None:
        """Spend what ``verify`` spends, for a user who does not exist: without it, "no such
        email" answers measurably faster than "wrong password" and leaks who has an account."""
        ...

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with weaker parameters than today's."""
        ...


class Users(Protocol):
    async def add(self, user: User) -> None:
        """Raise ``Conflict`` when the (normalised) email is taken."""
        ...

    async def get(self, user_id: uuid.UUID) -> User | None: ...

    async def by_email(self, email: str) -> User | None: ...

    async def save(self, user: User) -> None:
        """Write back a changed user (role, password hash, profile)."""
        ...


class RefreshTokens(Protocol):
    async def add(self, token: RefreshToken) -> None: ...

    async def get_for_update(self, digest: str) -> RefreshToken | None:
        """The stored token, locked until the unit of work ends: two refreshes racing with
        the same token are decided one after the other, so only one can spend it."""
        ...

    async def mark_used(self, digest: str, at: datetime.datetime) -> None: ...

    async def revoke_family(self, family: uuid.UUID) -> None: ...

    async def revoke_all_of(self, user_id: uuid.UUID) -> None:
        """Revoke every family of the account: its password or role changed, so no session
        that began before may continue."""
        ...


class IdentityUnitOfWork(Protocol):
    """One transaction over users and refresh tokens. Leaving the block without ``commit``
    rolls back: nothing is written by accident. It may be entered again once left; each
    ``async with`` is a new transaction (a use case keeps slow work between two of them)."""

    @property
    def users(self) -> Users: ...

    @property
    def refresh_tokens(self) -> RefreshTokens: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...


class RequestCounter(Protocol):
    """Counts requests per caller in fixed windows, shared by every app process."""

    async def hit(self, quota: Quota, caller: str) -> int:
        """Count one request; return the caller's count in the current window, this one
        included. Raise ``Unavailable`` when the counter cannot be reached."""
        ...

    async def seconds_left(self, quota: Quota, caller: str) -> float:
        """Until the caller's current window (or hold) ends."""
        ...

    async def hold(self, quotas: Sequence[Quota], caller: str, *, seconds: int) -> None:
        """Keep these quotas exhausted for the caller during ``seconds``: every ``hit`` until
        then returns a count above any quota, and the hold ends on its own."""
        ...

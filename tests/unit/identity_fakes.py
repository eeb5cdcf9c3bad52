"""In-memory stand-ins for the identity ports, for unit tests of the use cases only.

They satisfy the Protocols structurally; the real adapters are tested against PostgreSQL in
tests/integration.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import uuid
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Self

from shop.domain.errors import Conflict
from shop.domain.identity.model import Principal, RefreshToken, Role, User


class FakeHasher:
    """Deterministic and instant; ``old$`` hashes stand for ones made with weaker settings."""

    def __init__(self) -> None:
        self.wasted = 0

    async def hash(self, password: str) -> str:
        return "fake$" + hashlib.sha256(password.encode()).hexdigest()

    async def verify(self, password_hash: str, password: str) -> bool:
        digest = hashlib.sha256(password.encode()).hexdigest()
        return password_hash.split("$", 1)[1] == digest

    async def waste_time(self, password: str) -> None:
        self.wasted += 1

    def needs_rehash(self, password_hash: str) -> bool:
        return password_hash.startswith("old$")


class FakeAccessTokens:
    def issue(self, principal: Principal) -> tuple[str, int]:
        return f"access:{principal.user_id}:{principal.role.value}:{uuid.uuid4().hex}", 900

    def verify(self, token: str) -> Principal:
        kind, user_id, role, _ = token.split(":")
        if kind != "access":
            raise ValueError("not an access token of this fake")
        return Principal(user_id=uuid.UUID(user_id), role=Role(role))


@dataclass
class _State:
    users: dict[uuid.UUID, User] = field(default_factory=dict)
    tokens: dict[str, RefreshToken] = field(default_factory=dict)


class _Users:
    def __init__(self, state: _State) -> None:
        self._state = state

    async def add(self, user: User) -> None:
        if any(u.email == user.email for u in self._state.users.values()):
            raise Conflict("an account with this email already exists")
        self._state.users[user.id] = user

    async def get(self, user_id: uuid.UUID) -> User | None:
        return self._state.users.get(user_id)

    async def by_email(self, email: str) -> User | None:
        return next((u for u in self._state.users.values() if u.email == email), None)

    async def save(self, user: User) -> None:
        self._state.users[user.id] = user


class _RefreshTokens:
    def __init__(self, state: _State) -> None:
        self._state = state

    async def add(self, token: RefreshToken) -> None:
        self._state.tokens[token.digest] = token

    async def get_for_update(self, digest: str) -> RefreshToken | None:
        return self._state.tokens.get(digest)

    async def mark_used(self, digest: str, at: datetime.datetime) -> None:
        self._state.tokens[digest] = replace(self._state.tokens[digest], used_at=at)

    async def revoke_family(self, family: uuid.UUID) -> None:
        for digest, token in list(self._state.tokens.items()):
            if token.family == family:
                self._state.tokens[digest] = replace(token, revoked=True)

    async def revoke_all_of(self, user_id: uuid.UUID) -> None:
        for digest, token in list(self._state.tokens.items()):
            if token.user_id == user_id:
                self._state.tokens[digest] = replace(token, revoked=True)


class FakeIdentityUnitOfWork:
    """Works on a copy of the committed state; ``commit`` publishes it, leaving drops it."""

    def __init__(self) -> None:
        self.committed = _State()
        self.commits = 0
        self._work = _State()
        self.users = _Users(self._work)
        self.refresh_tokens = _RefreshTokens(self._work)

    async def __aenter__(self) -> Self:
        self._work = copy.deepcopy(self.committed)
        self.users = _Users(self._work)
        self.refresh_tokens = _RefreshTokens(self._work)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._work = _State()

    async def commit(self) -> None:
        self.committed = copy.deepcopy(self._work)
        self.commits += 1

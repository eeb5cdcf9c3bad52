"""PostgreSQL adapters of the identity ports: users, refresh tokens, and their unit of work.

Rows are translated into domain objects here, so nothing outside adapters sees ``UserRow``.
Refresh tokens are stored by digest only (``refresh_token.jti`` holds the SHA-256 of the
secret): a copy of the table lets nobody refresh a session.
"""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shop.adapters.db.tables import RefreshTokenRow, UserRow
from shop.adapters.db.unit_of_work import SessionUnitOfWork
from shop.domain.errors import Conflict
from shop.domain.identity.model import RefreshToken, Role, User

UNIQUE_VIOLATION = "23505"


class UserRepository(SQLAlchemyAsyncRepository[UserRow]):
    model_type = UserRow


class RefreshTokenRepository(SQLAlchemyAsyncRepository[RefreshTokenRow]):
    model_type = RefreshTokenRow


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        email=row.email,
        name=row.name,
        role=Role(row.role),
        password_hash=row.password_hash,
        phone=row.phone,
        address=row.address,
    )


def _refresh_token(row: RefreshTokenRow) -> RefreshToken:
    return RefreshToken(
        digest=row.jti,
        family=row.family,
        user_id=row.user_id,
        expires_at=row.expires_at,
        used_at=row.used_at,
        revoked=row.revoked,
    )


class SqlUsers:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        # Unwrapped errors: the unique violation is told apart by its SQLSTATE, not by
        # matching message text.
        self._repo = UserRepository(session=session, wrap_exceptions=False)

    async def add(self, user: User) -> None:
        row = UserRow(
            id=user.id,
            email=user.email,
            password_hash=user.password_hash,
            name=user.name,
            phone=user.phone,
            address=user.address,
            role=user.role.value,
        )
        try:
            await self._repo.add(row, auto_refresh=False)
        except IntegrityError as exc:
            # The only unique column besides the (random) id is the email.
            if getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION:
                raise Conflict("an account with this email already exists") from None
            raise

    async def get(self, user_id: uuid.UUID) -> User | None:
        row = await self._repo.get_one_or_none(UserRow.id == user_id)
        return None if row is None else _user(row)

    async def by_email(self, email: str) -> User | None:
        row = await self._repo.get_one_or_none(UserRow.email == email)
        return None if row is None else _user(row)

    async def save(self, user: User) -> None:
        await self._session.execute(
            update(UserRow)
            .where(UserRow.id == user.id)
            .values(
                email=user.email,
                password_hash=user.password_hash,
                name=user.name,
                phone=user.phone,
                address=user.address,
                role=user.role.value,
            )
        )


class SqlRefreshTokens:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._repo = RefreshTokenRepository(session=session)

    async def add(self, token: RefreshToken) -> None:
        row = RefreshTokenRow(
            family=token.family,
            jti=token.digest,
            user_id=token.user_id,
            expires_at=token.expires_at,
            used_at=token.used_at,
            revoked=token.revoked,
        )
        await self._repo.add(row, auto_refresh=False)

    async def get_for_update(self, digest: str) -> RefreshToken | None:
        row = await self._repo.get_one_or_none(RefreshTokenRow.jti == digest, with_for_update=True)
        return None if row is None else _refresh_token(row)

    async def mark_used(self, digest: str, at: datetime.datetime) -> None:
        await self._session.execute(
            update(RefreshTokenRow).where(RefreshTokenRow.jti == digest).values(used_at=at)
        )

    async def revoke_family(self, family: uuid.UUID) -> None:
        await self._session.execute(
            update(RefreshTokenRow)
            .where(RefreshTokenRow.family == family, RefreshTokenRow.revoked.is_(False))
            .values(revoked=True)
        )

    async def revoke_all_of(self, user_id: uuid.UUID) -> None:
        await self._session.execute(
            update(RefreshTokenRow)
            .where(RefreshTokenRow.user_id == user_id, RefreshTokenRow.revoked.is_(False))
            .values(revoked=True)
        )


class SqlIdentityUnitOfWork(SessionUnitOfWork):
    """A session per ``async with``; leaving without ``commit`` rolls back."""

    @property
    def users(self) -> SqlUsers:
        return self._current_users

    @property
    def refresh_tokens(self) -> SqlRefreshTokens:
        return self._current_tokens

    def _open(self, session: AsyncSession) -> None:
        self._current_users = SqlUsers(session)
        self._current_tokens = SqlRefreshTokens(session)

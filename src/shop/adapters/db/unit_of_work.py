"""The session lifecycle every SQL unit of work shares (cf. cosmicpython's unit of work).

One session per ``async with``; leaving it without ``commit()`` rolls back, so nothing is
committed by accident. Subclasses only say which repositories to open on the session.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class SessionUnitOfWork(ABC):
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._session: AsyncSession | None = None

    @abstractmethod
    def _open(self, session: AsyncSession) -> None:
        """Create this unit of work's repositories on a fresh session."""

    async def __aenter__(self) -> Self:
        self._session = self._sessionmaker()
        self._open(self._session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()  # rolls back whatever was not committed

    async def commit(self) -> None:
        if self._session is None:
            raise RuntimeError("commit() outside 'async with' of the unit of work")
        await self._session.commit()

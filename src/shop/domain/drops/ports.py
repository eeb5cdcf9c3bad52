"""Ports of the drops module. Adapters satisfy them structurally (no base classes)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from shop.domain.drops.model import Drop, DropRules
from shop.domain.drops.queue import Admission, RoomAnswer


class Drops(Protocol):
    """The drops repository (PostgreSQL). An option belongs to at most one drop that has not
    ended; the repository decides that under one lock, so two admins cannot both claim it."""

    async def add(self, rules: DropRules, *, now: datetime) -> Drop:
        """Announce a drop (``Drop.announce``) and claim its options. ``InvalidInput``
        naming unknown options, ``Conflict`` naming options in another drop not ended yet."""
        ...

    async def get(self, drop_id: int) -> Drop | None: ...

    async def save(self, drop: Drop, *, now: datetime) -> None:
        """Store changed rules (claiming any new options as ``add`` does)."""
        ...

    async def current(self, now: datetime, *, limit: int) -> Sequence[Drop]:
        """Drops not ended yet, soonest start first."""
        ...

    async def sales(self, drop: Drop) -> tuple[int, int]:
        """Units of the drop's options in live orders: (sold = paid or later, held = unpaid)."""
        ...


class AdmissionTokens(Protocol):
    """Signs admissions so that any app process can check one without asking anyone."""

    def issue(self, admission: Admission) -> str: ...

    def read(self, token: str) -> Admission | None:
        """The admission, or ``None`` if the token is forged or malformed."""
        ...


class WaitingRoom(Protocol):
    """The queue of a drop, shared by every app process (Redis). Joining and polling touch
    no PostgreSQL: the drop's rules are published here when the drop is created or changed."""

    async def publish(self, drop: Drop) -> None: ...

    async def begin_republish(self) -> str:
        """Start republishing every drop not ended; the mark is for ``end_republish``."""
        ...

    async def end_republish(self, mark: str) -> None:
        """Every drop not ended is published: from now on a drop the room does not know is
        unknown (404), not lost with Redis (503). Ignored if Redis lost its state since
        ``begin_republish``."""
        ...

    async def is_published(self, drop_id: int) -> bool:
        """False once Redis lost the room (or it was never published)."""
        ...

    async def join(self, drop_id: int, user_id: uuid.UUID) -> RoomAnswer:
        """Take a place (or keep the one held); ``NotFound`` for a drop not published."""
        ...

    async def poll(self, drop_id: int, user_id: uuid.UUID) -> RoomAnswer:
        """Admit whoever is due, then answer for this buyer; ``NotFound`` if they never
        joined (or the queue was lost since: they must join again)."""
        ...

    async def used(self, drop_id: int, user_id: uuid.UUID) -> None:
        """An admitted buyer placed an order: their slot is now a reserved unit."""
        ...

    async def refresh_left(self, drop_id: int, read: Callable[[], Awaitable[int]]) -> None:
        """Store ``read()`` (what the stock port says is left of the drop's options), less
        what was reserved through the room since the reading began: never more than the
        stock port has, however refreshes and purchases race."""
        ...

    async def counts(self, drop_id: int) -> tuple[int, int]:
        """(waiting, admitted and not used yet)."""
        ...

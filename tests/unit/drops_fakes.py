"""In-memory stand-ins for the drops ports (they satisfy the Protocols structurally)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

from shop.domain.drops.model import Drop, DropRules
from shop.domain.drops.queue import Admission, QueueStatus, RoomAnswer
from shop.domain.errors import Conflict, NotFound


class FakeDrops:
    def __init__(self) -> None:
        self.rows: dict[int, Drop] = {}
        self.sold_held: tuple[int, int] = (0, 0)

    async def add(self, rules: DropRules, *, now: datetime) -> Drop:
        drop = Drop.announce(rules, drop_id=len(self.rows) + 1, now=now)
        self._check(drop, now)
        self.rows[drop.id] = drop
        return drop

    def _check(self, drop: Drop, now: datetime) -> None:
        for other in self.rows.values():
            shared = set(other.rules.option_ids) & set(drop.rules.option_ids)
            if other.id != drop.id and shared and not other.has_ended(now):
                raise Conflict("option in another drop", extra={"option_ids": sorted(shared)})

    async def get(self, drop_id: int) -> Drop | None:
        return self.rows.get(drop_id)

    async def save(self, drop: Drop, *, now: datetime) -> None:
        self._check(drop, now)
        self.rows[drop.id] = replace(drop)

    async def current(self, now: datetime, *, limit: int) -> Sequence[Drop]:
        live = [d for d in self.rows.values() if not d.has_ended(now)]
        return sorted(live, key=lambda d: (d.rules.starts_at, d.id))[:limit]

    async def sales(self, drop: Drop) -> tuple[int, int]:
        return self.sold_held


class FakeAdmissions:
    """Tokens are keys into a dict: unforgeable within the test."""

    def __init__(self) -> None:
        self.issued: dict[str, Admission] = {}

    def issue(self, admission: Admission) -> str:
        token = f"t{len(self.issued)}"
        self.issued[token] = admission
        return token

    def read(self, token: str) -> Admission | None:
        return self.issued.get(token)


class FakeRoom:
    def __init__(self) -> None:
        self.published: dict[int, Drop] = {}
        self.left: dict[int, int] = {}
        self.used_by: list[tuple[int, uuid.UUID]] = []
        self.answers: dict[uuid.UUID, RoomAnswer] = {}
        self.republished = False

    async def begin_republish(self) -> str:
        return "mark"

    async def end_republish(self, mark: str) -> None:
        self.republished = True

    async def publish(self, drop: Drop) -> None:
        self.published[drop.id] = drop

    async def is_published(self, drop_id: int) -> bool:
        return drop_id in self.published

    async def join(self, drop_id: int, user_id: uuid.UUID) -> RoomAnswer:
        return self.answers.setdefault(user_id, RoomAnswer(QueueStatus.WAITING, position=1))

    async def poll(self, drop_id: int, user_id: uuid.UUID) -> RoomAnswer:
        if user_id not in self.answers:
            raise NotFound("not in the queue")
        return self.answers[user_id]

    async def used(self, drop_id: int, user_id: uuid.UUID) -> None:
        self.used_by.append((drop_id, user_id))

    async def refresh_left(self, drop_id: int, read: Callable[[], Awaitable[int]]) -> None:
        self.left[drop_id] = await read()

    async def counts(self, drop_id: int) -> tuple[int, int]:
        return (0, 0)

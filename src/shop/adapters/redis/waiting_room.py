"""``RedisWaitingRoom``: a drop's queue in Redis, shared by every app process.

Every decision is one Lua script (``waiting_room_scripts``): joining, polling and admitting
never touch PostgreSQL. The drop's rules are published here when the drop is created or
changed, and ``left`` (what the stock port says is left of the drop's options) is kept
current by ``RoomStock``: a reservation subtracts what it took in the script that ends the
buyer's hold (``took``), a release or restock stores a fresh reading (``refresh_left``), and
so does the worker's periodic refresh.

If Redis loses the room (a restart without persistence, a flush), the queue is empty and the
scripts answer ``lost``: buyers get ``503`` until the worker republishes the rules from
PostgreSQL (logged as an error), then join again. Nothing can oversell: admission tokens
only open the door, the stock port still decides every unit.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

from redis.asyncio import Redis

from shop.adapters.redis import waiting_room_scripts as lua
from shop.domain.drops.model import Drop
from shop.domain.drops.queue import REFUSAL_GRACE, QueueStatus, RoomAnswer
from shop.domain.errors import NotFound, Unavailable

ROOMS = "rooms"  # set of published drop ids
ROOM_OF_OPTION = "rooms:options"  # hash option id -> drop id
# Set by every complete republish (the worker's, the app's start-up): present, every drop not
# ended is published, so a room Redis does not know is an unknown drop (404); absent, Redis
# lost its state (or nothing republished since it started) and the answer is 503.
EPOCH = "rooms:epoch"
REPUBLISH_MS = 60_000  # a republish that takes longer than this marks nothing
REFRESH_ATTEMPTS = 5
PURCHASE_PIN_MS = 30_000  # a purchase under way keeps its hold this long, at least
REFUSAL_GRACE_MS = round(REFUSAL_GRACE.total_seconds() * 1000)  # the domain's rule, in ms
_PARTS = ("rules", "queue", "seq", "admitted", "used", "bucket", "left", "total", "holds", "held")


def room_key(drop_id: int, part: str) -> str:
    return f"{{room:{drop_id}}}:{part}"


def _ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def _when(ms: Any) -> datetime:
    return datetime.fromtimestamp(float(ms) / 1000, tz=UTC)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisWaitingRoom:
    """The ``WaitingRoom`` port."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._decide = redis.register_script(lua.DECIDE)
        self._reserving = redis.register_script(lua.RESERVING)
        self._take = redis.register_script(lua.TAKE)
        self._release_hold = redis.register_script(lua.RELEASE_HOLD)
        self._refused = redis.register_script(lua.REFUSED)
        self._begin_refresh = redis.register_script(lua.BEGIN_REFRESH)
        self._write_refresh = redis.register_script(lua.WRITE_REFRESH)
        self._end_republish = redis.register_script(lua.END_REPUBLISH)
        # Bumped by every publish from this process, so a cache of the published options
        # here (``RoomStock``) reloads at once; other processes' caches within a second.
        self.publications = 0

    def _keys(self, drop_id: int) -> list[str]:
        return [room_key(drop_id, part) for part in _PARTS]

    async def publish(self, drop: Drop) -> None:
        rules = drop.rules
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            room_key(drop.id, "rules"),
            mapping={
                "starts": _ms(rules.starts_at),
                "ends": 0 if rules.ends_at is None else _ms(rules.ends_at),
                "pre": round(rules.queue.pre_queue.total_seconds() * 1000),
                "rate": rules.queue.admit_per_second,
                "ttl": round(rules.queue.admission_ttl.total_seconds() * 1000),
                "options": ",".join(str(o) for o in rules.option_ids),
                "queued": int(rules.queue.enabled),
                "share": rules.per_buyer_limit,
            },
        )
        pipe.sadd(ROOMS, drop.id)
        pipe.hset(ROOM_OF_OPTION, mapping={str(o): drop.id for o in rules.option_ids})
        await pipe.execute()
        self.publications += 1

    async def begin_republish(self) -> str:
        """A mark that a flush (or a restart without persistence) deletes."""
        mark = f"rooms:republish:{secrets.token_hex(8)}"
        await self._redis.set(mark, 1, px=REPUBLISH_MS)
        return mark

    async def end_republish(self, mark: str) -> None:
        """Set the epoch, unless Redis lost its state since ``begin_republish`` (then the
        rooms republished before the loss are gone again, and 503 stays the answer)."""
        await self._end_republish(keys=[mark, EPOCH])

    async def is_published(self, drop_id: int) -> bool:
        return bool(await self._redis.exists(room_key(drop_id, "rules")))

    async def options_of(self, drop_id: int) -> list[int]:
        raw = await cast(
            "Awaitable[bytes | None]", self._redis.hget(room_key(drop_id, "rules"), "options")
        )
        return [int(o) for o in _text(raw).split(",") if o] if raw else []

    async def room_of_option(self) -> dict[int, int]:
        """Every published option → its drop (``RoomStock`` caches this)."""
        raw = await cast("Awaitable[dict[bytes, bytes]]", self._redis.hgetall(ROOM_OF_OPTION))
        return {int(option): int(drop) for option, drop in raw.items()}

    async def _run(self, drop_id: int, user_id: uuid.UUID, *, join: bool) -> RoomAnswer:
        draw = f"{secrets.randbelow(2**52) / 2**52:.17f}"
        outcome = await self._decide(
            keys=self._keys(drop_id), args=[str(user_id), "1" if join else "0", draw]
        )
        kind = _text(outcome[0])
        if kind == "lost":
            if await self._redis.exists(EPOCH):
                raise NotFound("drop not found")
            # No room was ever published here, or Redis lost them all (the worker republishes
            # and logs it): an unknown drop is 404, a lost one 503 until it is back.
            raise Unavailable(
                "the waiting room lost its state and is being rebuilt; join again shortly",
                retry_after=2.0,
            )
        if kind == "unknown":
            raise NotFound(
                "you are not in this queue (never joined, your admission expired, or the "
                "queue was reset): join it with POST"
            )
        if kind == "ended":
            return RoomAnswer(QueueStatus.ENDED)
        if kind == "not_open":
            return RoomAnswer(QueueStatus.NOT_OPEN, starts_at=_when(outcome[1]))
        if kind == "admitted":
            return RoomAnswer(QueueStatus.ADMITTED, admission_expires_at=_when(outcome[1]))
        position = int(outcome[1]) or None
        return RoomAnswer(
            QueueStatus(kind),
            position=position,
            starts_at=_when(outcome[2]),
            admit_per_second=int(outcome[3]),
        )

    async def join(self, drop_id: int, user_id: uuid.UUID) -> RoomAnswer:
        return await self._run(drop_id, user_id, join=True)

    async def poll(self, drop_id: int, user_id: uuid.UUID) -> RoomAnswer:
        return await self._run(drop_id, user_id, join=False)

    def _hold_keys(self, drop_id: int) -> list[str]:
        return [
            room_key(drop_id, part)
            for part in ("rules", "admitted", "used", "left", "holds", "held", "taken", "writes")
        ]

    async def used(self, drop_id: int, user_id: uuid.UUID) -> None:
        await self._release_hold(keys=self._hold_keys(drop_id)[:6], args=[str(user_id)])

    async def refused(self, drop_id: int, buyer: str) -> None:
        """The stock port refused the option this admitted buyer picked: they keep their hold
        for ``REFUSAL_GRACE_MS`` to pick another, then it goes to the next in line (they stay
        admitted, without a hold, until the admission expires)."""
        await self._refused(
            keys=[room_key(drop_id, "admitted"), room_key(drop_id, "used")],
            args=[buyer, REFUSAL_GRACE_MS],
        )

    async def reserving(self, drop_id: int, buyer: str) -> int:
        """Before a reservation of the drop's options begins: the buyer's hold is kept until
        ``took`` (see ``RESERVING``); the mark is for ``took``."""
        keys = [room_key(drop_id, part) for part in ("writes", "admitted", "used")]
        return int(await self._reserving(keys=keys, args=[buyer, PURCHASE_PIN_MS]))

    async def took(
        self,
        drop_id: int,
        buyer: str,
        units: int,
        *,
        mark: int,
        read: Callable[[], Awaitable[int]],
    ) -> None:
        """A reservation of ``units`` of the drop's options went through: ``left`` drops by
        them and the buyer's hold ends, in one script (see ``TAKE``); if a refresh wrote
        while it was under way, ``read()`` gives a fresh reading instead."""
        if await self._take(keys=self._hold_keys(drop_id), args=[buyer, units, mark]) == 2:
            await self.refresh_left(drop_id, read)

    async def refresh_left(
        self,
        drop_id: int,
        read: Callable[[], Awaitable[int]],
        *,
        attempts: int = REFRESH_ATTEMPTS,
    ) -> None:
        """Store ``read()`` as what is left, less what was reserved through the room since
        the reading began, unless a later refresh wrote first (``WRITE_REFRESH``): never
        above what the stock port has, and never an older reading over a newer one. Read
        again while reservations landed meanwhile (after ``attempts`` the last write may be
        low for a moment; the next refresh, the worker's at the latest, corrects it)."""
        counters = [room_key(drop_id, "taken"), room_key(drop_id, "tickets")]
        written = [
            room_key(drop_id, "rules"),
            room_key(drop_id, "left"),
            room_key(drop_id, "taken"),
            room_key(drop_id, "written"),
            room_key(drop_id, "writes"),
        ]
        for _ in range(attempts):
            taken, ticket = await self._begin_refresh(keys=counters)
            units = max(await read(), 0)
            if not await self._write_refresh(keys=written, args=[units, taken, ticket]):
                return

    async def counts(self, drop_id: int) -> tuple[int, int]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(room_key(drop_id, "queue"))
        pipe.zcard(room_key(drop_id, "admitted"))
        waiting, admitted = await pipe.execute()
        return int(waiting), int(admitted)

    async def admitted_total(self, drop_id: int) -> int:
        return int(await self._redis.get(room_key(drop_id, "total")) or 0)

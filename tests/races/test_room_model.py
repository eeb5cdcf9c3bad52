"""The waiting room as a model-based test: random joins, polls, purchases, refusals, units
coming back and refreshes racing purchases, against the real Redis scripts, with the room's
promises checked after every step.

A purchase is two steps, as in the app: the stock port reserves (``truth`` drops), then the
room is told (``took``); another buyer's step may fall in between. A refresh is two steps
too: it reads the stock port, and writes what it read later, after anything else happened.

The promises (the slot rule of ``shop.domain.drops.queue``):

- **nobody is admitted for stock that is gone**: the units held by admitted buyers (not in
  the middle of their purchase) never exceed what the stock port has, whatever interleaves;
- the room's ``left`` never exceeds what the stock port has plus purchases not told yet, and
  equals it whenever no purchase or refresh is in flight (exact, not eventually right);
- **no stock is left unsold while buyers wait**: when the room is quiet and someone polls,
  either nobody waits or no unit is free of holds;
- every hold is between 1 and the per-buyer limit, and the held total is their sum;
- admission follows the queue, an admitted buyer stays admitted with the same expiry, and a
  waiting buyer is told ``sold_out`` exactly when nothing is left.

The clock is Redis's; the admission rate is high enough that the bucket's refill only changes
how many are admitted per poll, never whether the promises hold.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from shop.adapters.redis import waiting_room
from shop.adapters.redis.waiting_room import RedisWaitingRoom, room_key
from shop.bootstrap import Container
from shop.domain.drops.model import Drop, DropRules, QueueSettings
from shop.domain.drops.queue import QueueStatus, RoomAnswer
from shop.domain.errors import NotFound
from tests.conftest import reset_state

T = TypeVar("T")
USERS = [uuid.UUID(int=n + 1) for n in range(10)]
DROP_ID = 1
MAX_PARKED = 2
GRACE = waiting_room.REFUSAL_GRACE_MS


class ParkedRefresh:
    """A refresh whose every reading of the stock port waits for a step of the machine
    before it is written: the write and any reading it asks for are interleaved with the
    other buyers' steps, as in a loaded app."""

    def __init__(self, truth: Callable[[], int]) -> None:
        self._truth = truth
        self._gate, self._reading = asyncio.Event(), asyncio.Event()
        self._task: asyncio.Future[None] | None = None

    async def _read(self) -> int:
        value = self._truth()
        self._reading.set()
        await self._gate.wait()
        self._gate.clear()
        return value

    async def start(self, room: RedisWaitingRoom) -> None:
        self._task = asyncio.ensure_future(room.refresh_left(DROP_ID, self._read))
        await self._reading.wait()

    async def write(self) -> bool:
        """Let the reading be written; True once the refresh is over (no new reading)."""
        assert self._task is not None
        self._reading.clear()
        self._gate.set()
        reading: asyncio.Future[Any] = asyncio.ensure_future(self._reading.wait())
        either: set[asyncio.Future[Any]] = {self._task, reading}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        reading.cancel()
        if self._task.done():
            self._task.result()
            return True
        return False


def room_machine(loop: asyncio.AbstractEventLoop, container: Container) -> type[Any]:
    def run(work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout=60)

    room = RedisWaitingRoom(container.redis)
    redis = container.redis

    class RoomMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.truth = 0  # what the stock port has left
            self.share = 1
            self.joined: list[uuid.UUID] = []
            self.admitted: dict[uuid.UUID, datetime] = {}
            self.in_flight: dict[uuid.UUID, tuple[int, int]] = {}  # units, mark: not told yet
            self.ended: set[uuid.UUID] = set()  # bought: their hold is over
            self.refused_by: dict[uuid.UUID, int] = {}  # the latest end of their hold, ms
            self.grace = 0
            self.parked: list[ParkedRefresh] = []

        @initialize(
            share=st.integers(1, 3), units=st.integers(0, 8), grace=st.sampled_from([0, 60_000])
        )
        def open_the_drop(self, share: int, units: int, grace: int) -> None:
            """``grace``: a refused buyer's hold lasts until the next decision, or all along."""
            self.share, self.truth, self.grace = share, units, grace
            waiting_room.REFUSAL_GRACE_MS = grace
            run(self._begin())

        async def _begin(self) -> None:
            await reset_state(container)
            now = datetime.now(UTC)
            drop = Drop(
                id=DROP_ID,
                rules=DropRules(
                    name="model",
                    option_ids=(1,),
                    starts_at=now - timedelta(seconds=5),
                    per_buyer_limit=self.share,
                    queue=QueueSettings(
                        enabled=True, admit_per_second=1000, admission_ttl=timedelta(hours=1)
                    ),
                ),
                created_at=now,
            )
            await room.publish(drop)
            await room.refresh_left(DROP_ID, self._read)

        async def _read(self) -> int:
            return self.truth

        async def _left(self) -> int:
            return int(await redis.get(room_key(DROP_ID, "left")) or 0)

        async def _holds(self) -> dict[uuid.UUID, int]:
            raw = await redis.hgetall(room_key(DROP_ID, "holds"))  # type: ignore[misc]
            return {uuid.UUID(k.decode()): int(v) for k, v in raw.items()}

        def _see(self, user: uuid.UUID, answer: RoomAnswer) -> None:
            left = run(self._left())
            if answer.status is QueueStatus.ADMITTED:
                expiry = answer.admission_expires_at
                assert expiry is not None
                assert self.admitted.setdefault(user, expiry) == expiry
            else:
                assert user not in self.admitted, (user, answer)
                if answer.status is QueueStatus.SOLD_OUT:
                    assert left == 0
                else:
                    assert answer.status is QueueStatus.WAITING and left > 0

        def _decide(self, work: Coroutine[Any, Any, RoomAnswer]) -> RoomAnswer:
            """Run a join or poll; the admissions it made each hold one buyer's share (the
            per-buyer limit), except the last one when fewer units than that were free."""
            before = run(self._holds())
            try:
                return run(work)
            finally:
                holds = run(self._holds())
                new = [h for user, h in holds.items() if user not in before]
                left, held, _ = run(self._figures())
                short = [h for h in new if h < self.share]
                assert len(short) <= 1, holds
                if short:
                    assert left - held == 0, (holds, left)  # a part share only of the last

        @rule(n=st.integers(0, len(USERS) - 1))
        def join(self, n: int) -> None:
            user = USERS[n]
            self._see(user, self._decide(room.join(DROP_ID, user)))
            if user not in self.joined:
                self.joined.append(user)

        @rule(n=st.integers(0, len(USERS) - 1))
        def poll(self, n: int) -> None:
            user = USERS[n]
            try:
                answer = self._decide(room.poll(DROP_ID, user))
            except NotFound:
                assert user not in self.joined
                return
            self._see(user, answer)

        @rule(n=st.integers(0, len(USERS) - 1), data=st.data())
        def reserve(self, n: int, data: st.DataObject) -> None:
            """An admitted buyer's order reserves up to their hold: the stock port must have
            it (the promise), and the room hears of it in a later step (``told``)."""
            user = USERS[n]
            hold = run(self._holds()).get(user)
            if hold is None or user in self.in_flight:
                return
            units = data.draw(st.integers(1, hold), label="units")
            mark = run(room.reserving(DROP_ID, str(user)))
            self.refused_by.pop(user, None)  # the purchase keeps the hold until told
            assert self.truth >= units, "admitted for stock that is gone"
            self.truth -= units
            self.in_flight[user] = (units, mark)

        @precondition(lambda self: bool(self.in_flight))
        @rule(data=st.data())
        def told(self, data: st.DataObject) -> None:
            user = data.draw(st.sampled_from(sorted(self.in_flight)), label="buyer")
            self._tell(user, *self.in_flight.pop(user))

        def _tell(self, user: uuid.UUID, units: int, mark: int) -> None:
            run(room.took(DROP_ID, str(user), units, mark=mark, read=self._read))
            self.ended.add(user)

        @rule(n=st.integers(0, len(USERS) - 1))
        def refused(self, n: int) -> None:
            """The option an admitted buyer picked is sold out: they keep their hold for the
            grace (to pick another option), then it goes on."""
            user = USERS[n]
            if user in run(self._holds()) and user not in self.in_flight:
                run(room.refused(DROP_ID, str(user)))
                self.refused_by[user] = run(self._now_ms()) + self.grace

        @rule(units=st.integers(1, 3))
        def units_come_back(self, units: int) -> None:
            """An order expired or was cancelled; ``RoomStock`` refreshes after the release."""
            self.truth += units
            run(room.refresh_left(DROP_ID, self._read))

        @precondition(lambda self: len(self.parked) < MAX_PARKED)
        @rule()
        def a_refresh_reads(self) -> None:
            refresh = ParkedRefresh(lambda: self.truth)
            run(refresh.start(room))
            self.parked.append(refresh)

        @precondition(lambda self: bool(self.parked))
        @rule(data=st.data())
        def a_refresh_writes(self, data: st.DataObject) -> None:
            """It writes what it read; if it reads again, that reading waits for a step too."""
            index = data.draw(st.integers(0, len(self.parked) - 1), label="refresh")
            if run(self.parked[index].write()):
                self.parked.pop(index)

        def _land_refreshes(self) -> None:
            while self.parked:
                if run(self.parked[-1].write()):
                    self.parked.pop()

        @rule()
        def quiet(self) -> None:
            """Everything in flight lands; then a poll finds nobody waiting or nothing free."""
            self._land_refreshes()
            for user, (units, mark) in sorted(self.in_flight.items()):
                self._tell(user, units, mark)
            self.in_flight.clear()
            if self.joined:
                self.poll(0 if USERS[0] in self.joined else USERS.index(self.joined[0]))
            left, held, waiting = run(self._figures())
            assert left == self.truth
            assert waiting == 0 or left - held < 1, (left, held, waiting)

        async def _figures(self) -> tuple[int, int, int]:
            held = int(await redis.get(room_key(DROP_ID, "held")) or 0)
            return await self._left(), held, int(await redis.zcard(room_key(DROP_ID, "queue")))

        @invariant()
        def promises_hold(self) -> None:
            holds = run(self._holds())
            left, held, _ = run(self._figures())
            backed = sum(h for user, h in holds.items() if user not in self.in_flight)
            assert backed <= self.truth, (holds, self.truth)  # nobody admitted for nothing
            assert left <= self.truth + sum(units for units, _ in self.in_flight.values()), (
                left,
                self.truth,
            )
            if not self.in_flight and not self.parked:
                assert left == self.truth, (left, self.truth)  # exact when quiet
            assert held == sum(holds.values())
            assert not set(holds) & self.ended, holds  # a hold ends with the purchase
            for user, by in self.refused_by.items():
                score = run(self._hold_ends(user))
                assert score is None or score <= by, (user, score, by)  # ... or its grace
            assert all(1 <= h <= self.share for h in holds.values()), holds
            unused = run(self._members("admitted"))
            assert {uuid.UUID(u.decode()) for u in unused} == set(holds)
            queue = run(self._members("queue"))
            waiting = [self.joined.index(uuid.UUID(raw.decode())) for raw in queue]
            admitted_places = [self.joined.index(u) for u in self.admitted]
            if admitted_places and waiting:
                assert max(admitted_places) < min(waiting)  # arrival order kept

        async def _now_ms(self) -> int:
            seconds, micros = await redis.time()
            return int(seconds) * 1000 + int(micros) // 1000

        async def _hold_ends(self, user: uuid.UUID) -> float | None:
            score: float | None = await redis.zscore(room_key(DROP_ID, "admitted"), str(user))
            return score

        async def _members(self, part: str) -> list[bytes]:
            members: list[bytes] = await redis.zrange(room_key(DROP_ID, part), 0, -1)
            return members

        def teardown(self) -> None:
            self._land_refreshes()
            waiting_room.REFUSAL_GRACE_MS = GRACE

    return RoomMachine


async def test_the_waiting_room_keeps_its_promises(clean: Container) -> None:
    machine = room_machine(asyncio.get_running_loop(), clean)
    await asyncio.to_thread(
        run_state_machine_as_test,
        machine,
        settings=hypothesis_settings(
            max_examples=150,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

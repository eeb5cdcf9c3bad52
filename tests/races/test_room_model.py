"""The waiting room as a model-based test: random joins, polls, purchases and units coming
back against the real Redis scripts, with the room's promises checked after every step:

- never more unused admissions than units left (an admission holds one unit's slot);
- admission follows the queue: nobody still waiting has a better place than anyone admitted;
- a waiting buyer is told ``sold_out`` exactly when nothing is left;
- an admitted buyer stays admitted (with the same expiry) until the admission is used.

The clock is Redis's; the admission rate is high enough that the bucket's refill only changes
how many are admitted per poll, never whether the promises hold.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from shop.adapters.redis.waiting_room import RedisWaitingRoom, room_key
from shop.bootstrap import Container
from shop.domain.drops.model import Drop, DropRules, QueueSettings
from shop.domain.drops.queue import QueueStatus, RoomAnswer
from shop.domain.errors import NotFound
from tests.conftest import reset_state

T = TypeVar("T")
USERS = [uuid.UUID(int=n + 1) for n in range(12)]
DROP_ID = 1


def room_machine(loop: asyncio.AbstractEventLoop, container: Container) -> type[Any]:
    def run(work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, loop).result(timeout=60)

    room = RedisWaitingRoom(container.redis)

    class RoomMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.left = 0
            self.joined: list[uuid.UUID] = []
            self.admitted: dict[uuid.UUID, datetime] = {}
            self.used: set[uuid.UUID] = set()
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
                    queue=QueueSettings(
                        enabled=True, admit_per_second=1000, admission_ttl=timedelta(hours=1)
                    ),
                ),
                created_at=now,
            )
            await room.publish(drop)
            await self._set_left(3)

        async def _set_left(self, units: int) -> None:
            self.left = units

            async def read() -> int:
                return self.left

            await room.refresh_left(DROP_ID, read)

        def _see(self, user: uuid.UUID, answer: RoomAnswer) -> None:
            if answer.status is QueueStatus.ADMITTED:
                expiry = answer.admission_expires_at
                assert expiry is not None
                assert self.admitted.setdefault(user, expiry) == expiry
            else:
                assert user not in self.admitted, (user, answer)
                if answer.status is QueueStatus.SOLD_OUT:
                    assert self.left == 0
                else:
                    assert answer.status is QueueStatus.WAITING and self.left > 0

        @rule(n=st.integers(0, len(USERS) - 1))
        def join(self, n: int) -> None:
            user = USERS[n]
            if user in self.used:
                return  # the admission was used; a new join would queue a new purchase
            self._see(user, run(room.join(DROP_ID, user)))
            if user not in self.joined:
                self.joined.append(user)

        @rule(n=st.integers(0, len(USERS) - 1))
        def poll(self, n: int) -> None:
            user = USERS[n]
            try:
                answer = run(room.poll(DROP_ID, user))
            except NotFound:
                assert user not in self.joined
                return
            self._see(user, answer)

        @rule(n=st.integers(0, len(USERS) - 1))
        def buy(self, n: int) -> None:
            """An admitted buyer's order reserved a unit: ``left`` drops, then the slot."""
            user = USERS[n]
            if user not in self.admitted or user in self.used or self.left == 0:
                return
            run(self._set_left(self.left - 1))
            run(room.used(DROP_ID, user))
            self.used.add(user)

        @rule(units=st.integers(1, 2))
        def units_come_back(self, units: int) -> None:
            run(self._set_left(self.left + units))

        @invariant()
        def promises_hold(self) -> None:
            unused, waiting = run(self._sets())
            assert len(unused) <= self.left, (unused, self.left)
            admitted_places = [self.joined.index(u) for u in self.admitted]
            waiting_places = [self.joined.index(u) for u in waiting]
            if admitted_places and waiting_places:
                assert max(admitted_places) < min(waiting_places)  # arrival order kept

        async def _sets(self) -> tuple[list[bytes], list[uuid.UUID]]:
            unused = await container.redis.zrange(room_key(DROP_ID, "admitted"), 0, -1)
            queue = await container.redis.zrange(room_key(DROP_ID, "queue"), 0, -1)
            return unused, [uuid.UUID(raw.decode()) for raw in queue]

    return RoomMachine


async def test_the_waiting_room_keeps_its_promises(clean: Container) -> None:
    machine = room_machine(asyncio.get_running_loop(), clean)
    await asyncio.to_thread(
        run_state_machine_as_test,
        machine,
        settings=hypothesis_settings(
            max_examples=25,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

"""The stock promise as a model-based test: random operations and faults, invariants after each.

A hypothesis ``RuleBasedStateMachine`` drives the real use cases (``place_order``,
``cancel_order``, ``expire_order``, ``sweep_reservations``) and the real operator actions
(restock, ``shop stock use``) on the embedded PostgreSQL and Redis, for every strategy.
Purchases and sweeps run as *flows* (``tests/races/flows.py``) that stop after each store
call, so two processes can interleave at any point: a purchase parked after its reservation
while the sweep decides, a retry of the same purchase in between, a crash (the flow killed
where it stands), an order write that fails before or after its commit, Redis flushed or its
connections cut (a restart without persistence), the strategy switched.

After every step, for every option whose store is readable:
- nothing below zero, and units sold (lines of live orders) never exceed units put on sale;
- what is left plus what is sold never exceeds what was put on sale (a unit is either on sale,
  held by a reservation, or in a live order, never two of these).
After ``settle`` (every parked process dies, the sweep runs past the reservation timeout, a
lost counter state is rebuilt) and at the end of every example:
- conservation: ``stock_total = left + live order lines``, with no reservation outside orders;
- every live order's units are held by exactly one reservation, with the order's lines.

Hypothesis shrinks a failing run to a minimal sequence of steps; each one found became a named
regression test in ``test_crash_retry.py``. CI runs a few examples per strategy (profile
``ci``); ``uv run pytest -m fuzz`` runs many more (profile ``fuzz``), see ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

import msgspec
import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from shop.adapters.db.tables import OrderRow
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.config import Settings
from shop.domain.errors import (
    Conflict,
    InvalidInput,
    PurchaseLimitExceeded,
    ReservationLost,
    SoldOut,
    Unavailable,
)
from shop.domain.orders.services import cancel_order, expire_order
from shop.domain.orders.status import OrderStatus
from shop.domain.stock.model import Line, merge_lines
from tests.conftest import reset_state
from tests.factories import make_option, make_user
from tests.races.flows import Flow, InjectedWriteError, purchase, start_purchase
from tests.races.flows import start_sweep as start_sweep_flow
from tests.races.stock_invariants import check_no_oversell, check_settled, settle
from tests.unit.fakes import FakeClock

STRATEGIES = sorted(STOCK_STRATEGIES)
T = TypeVar("T")

# What a purchase may end with, besides an order: refusals the API turns into 409/503, and
# the faults the machine injected itself.
EXPECTED_REFUSALS = (
    SoldOut,
    PurchaseLimitExceeded,
    ReservationLost,
    Unavailable,
    InjectedWriteError,
    asyncio.CancelledError,
)
STOCK_PER_OPTION = (3, 5)
USERS = 2
KEYS_PER_USER = 3


class Harness:
    """Runs the machine's steps on the test's event loop (the machine itself runs in a thread:
    hypothesis drives a synchronous machine, the shop's connections live on this loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, container: Container) -> None:
        self.loop = loop
        self.container = container
        self.examples = 0  # sequences run (shrinking included), reported with ``pytest -s``

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=120)


def stock_machine(harness: Harness, strategy: str) -> type[RuleBasedStateMachine]:
    container = harness.container
    operations = container.stock_operations
    late = container.settings.reservation_timeout + 1

    class StockMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.flows: list[Flow] = []
            self.bodies: dict[tuple[int, int], tuple[Line, ...]] = {}
            self.users: list[uuid.UUID] = []
            self.options: list[int] = []
            harness.examples += 1
            harness.run(self._begin())

        async def _begin(self) -> None:
            await reset_state(container)
            await operations.use(strategy)
            self.users = [(await make_user(container))[0] for _ in range(USERS)]
            self.options = [await make_option(container, stock=units) for units in STOCK_PER_OPTION]

        # -- purchases and their processes ------------------------------------------------

        def _parked(self) -> list[Flow]:
            return [flow for flow in self.flows if flow.parked]

        def _follow(self, flow: Flow) -> None:
            """Keep a parked flow; check what a finished one ended with."""
            if flow.parked:
                if flow not in self.flows:
                    self.flows.append(flow)
                return
            if flow in self.flows:
                self.flows.remove(flow)
            outcome = flow.outcome()
            if isinstance(outcome, BaseException) and not isinstance(outcome, EXPECTED_REFUSALS):
                raise outcome

        @rule(
            user=st.integers(0, USERS - 1),
            key=st.integers(0, KEYS_PER_USER - 1),
            picks=st.lists(
                st.tuples(st.integers(0, len(STOCK_PER_OPTION) - 1), st.integers(1, 2)),
                min_size=1,
                max_size=2,
            ),
        )
        def buy(self, user: int, key: int, picks: list[tuple[int, int]]) -> None:
            """A purchase, or a client's retry of an earlier one (same key, same body)."""
            lines = self.bodies.setdefault(
                (user, key),
                merge_lines(Line(self.options[option], quantity) for option, quantity in picks),
            )
            cmd = purchase(self.users[user], f"key-{key}", lines)
            self._follow(harness.run(start_purchase(container, cmd)))

        @precondition(lambda self: bool(self._parked()))
        @rule(
            pick=st.integers(0, 7),
            fault=st.sampled_from(["none", "none", "before", "after"]),
        )
        def go_on(self, pick: int, fault: str) -> None:
            """A parked process takes its next step; an order write may fail on the way."""
            parked = self._parked()
            flow = parked[pick % len(parked)]
            if flow.point == "reserved":
                flow.write_fault = cast("Any", fault)
            harness.run(flow.run_to_next_stop())
            self._follow(flow)

        @precondition(lambda self: bool(self._parked()))
        @rule(pick=st.integers(0, 7))
        def crash(self, pick: int) -> None:
            """A parked process dies where it stands (``kill -9``)."""
            parked = self._parked()
            flow = parked[pick % len(parked)]
            harness.run(flow.kill())
            self.flows.remove(flow)

        @rule(overdue=st.booleans())
        def sweep(self, overdue: bool) -> None:
            """The reservation sweep, with its clock past the timeout or not."""
            self._follow(harness.run(start_sweep_flow(container, late_by=late if overdue else 0)))

        # -- the orders' lives -------------------------------------------------------------

        @rule(pick=st.integers(0, 15), expire=st.booleans())
        def close_an_order(self, pick: int, expire: bool) -> None:
            """The customer cancels, or the payment deadline passes."""
            harness.run(self._close(pick, expire=expire))

        async def _close(self, pick: int, *, expire: bool) -> None:
            async with container.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(OrderRow.id, OrderRow.user_id)
                        .where(OrderRow.status.in_(OrderStatus.values(OrderStatus.RELEASABLE)))
                        .order_by(OrderRow.id)
                    )
                ).all()
            if not rows:
                return
            order_id, user_id = rows[pick % len(rows)]
            with contextlib.suppress(Conflict, Unavailable):
                if expire:
                    later = FakeClock(container.clock.now() + datetime.timedelta(days=3))
                    await expire_order(
                        order_id, orders=container.orders, stock=container.stock, clock=later
                    )
                else:
                    await cancel_order(
                        order_id,
                        user_id=user_id,
                        orders=container.orders,
                        stock=container.stock,
                        clock=container.clock,
                    )

        # -- the operator and the infrastructure ------------------------------------------

        @rule(
            option=st.integers(0, len(STOCK_PER_OPTION) - 1),
            units=st.integers(1, 3),
            key=st.one_of(st.none(), st.integers(0, 2)),
        )
        def restock(self, option: int, units: int, key: int | None) -> None:
            """An admin's restock; a repeated key is a retry (or, with another body, refused)."""
            with contextlib.suppress(Unavailable, InvalidInput):
                harness.run(
                    container.stock.put_on_sale(
                        self.options[option],
                        units,
                        key=None if key is None else f"restock-{key}",
                    )
                )

        @rule(name=st.sampled_from(STRATEGIES))
        def switch(self, name: str) -> None:
            with contextlib.suppress(Conflict, Unavailable):
                harness.run(operations.use(name))

        @rule()
        def flush_redis(self) -> None:
            """Redis loses everything (FLUSHDB; an empty restart looks the same)."""
            harness.run(self._flush_redis())

        async def _flush_redis(self) -> None:
            await container.redis.flushdb()

        @rule()
        def restart_redis(self) -> None:
            """Redis restarts without persistence: every connection cut, every key gone."""
            harness.run(self._restart_redis())

        async def _restart_redis(self) -> None:
            redis = container.redis
            mine = int(await redis.client_id())
            db = int(redis.connection_pool.connection_kwargs.get("db", 0))
            for client in await redis.client_list():
                if int(client["db"]) == db and int(client["id"]) != mine:
                    with contextlib.suppress(Exception):
                        await redis.client_kill_filter(_id=str(client["id"]))
            await redis.flushdb()

        @rule()
        def settle(self) -> None:
            harness.run(self._settle_and_check())

        # -- invariants ---------------------------------------------------------------------

        @invariant()
        def nothing_is_sold_twice(self) -> None:
            harness.run(self._check_no_oversell())

        async def _check_no_oversell(self) -> None:
            await check_no_oversell(container)

        async def _settle_and_check(self) -> None:
            for flow in list(self.flows):
                await flow.kill()
            self.flows.clear()
            await settle(container)
            await check_settled(container)

        def teardown(self) -> None:
            try:
                harness.run(self._settle_and_check())
            finally:
                for flow in self.flows:
                    harness.run(flow.kill())

    return StockMachine


PROFILES = {
    # CI: a few short runs per strategy, minutes in all.
    "ci": hypothesis_settings(max_examples=12, stateful_step_count=25, deadline=None),
    # ``-m fuzz``: the nightly-style run.
    "fuzz": hypothesis_settings(max_examples=300, stateful_step_count=40, deadline=None),
}


@pytest.fixture
async def model_container(clean: Container, settings: Settings) -> Any:
    """A container tuned so that faults resolve in milliseconds, not seconds."""
    tuned = msgspec.structs.replace(
        settings,
        stock_recovery_grace=0.0,
        stock_wait=5.0,
        redlock_wait=2.0,
        reservation_timeout=60.0,
    )
    built = Container.build(tuned)
    yield built
    await built.close()


async def _run_machine(container: Container, strategy: str, profile: str) -> None:
    harness = Harness(asyncio.get_running_loop(), container)
    machine = stock_machine(harness, strategy)
    try:
        await asyncio.to_thread(run_state_machine_as_test, machine, settings=PROFILES[profile])
    finally:
        print(f"stock model, {strategy}, profile {profile}: {harness.examples} sequences")


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_stock_invariants_hold_under_random_faults(
    model_container: Container, strategy: str
) -> None:
    await _run_machine(model_container, strategy, "ci")


@pytest.mark.fuzz
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_stock_invariants_hold_under_many_random_faults(
    model_container: Container, strategy: str
) -> None:
    await _run_machine(model_container, strategy, "fuzz")

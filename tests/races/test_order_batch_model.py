"""The group-committed order writes as a model-based test: random bursts, invariants after each.

``SqlOrders`` sends the concurrent ``add`` and ``quote`` calls of one process as one statement
per batch (``ADD_ORDERS``, ``QUOTES``), and falls back to one statement per order when a
foreign key breaks the batch. Example tests pin single mixes; this hypothesis
``RuleBasedStateMachine`` starts bursts of up to 12 ``add`` calls together (so they share
batches), drawn from: a fresh key, a twin of a fresh key in the same burst (same customer and
Idempotency-Key, another order id), a retry of a key of an earlier step, a key claimed void, an
option whose product was deleted, a reservation taken from a lost counter generation, a
customer whose account is gone; with quotes of known keys and sometimes an ``abandon`` (the
sweep's void claim) in the same gather.

After every step, what each caller got is checked against the claims before the burst, and
PostgreSQL is read directly:
- each reservation key has at most one order, every order's key is claimed for an order, and
  a key claimed void has none;
- the orders that exist are exactly those whose ``add`` returned ``True``, with the lines and
  fields that were submitted;
- a quote of every known key (one batch) reports that key's order and void claim as stored;
- ``abandon`` returned ``True`` exactly when no order holds the key.

CI runs a few examples (profile ``ci``); ``uv run pytest -m fuzz`` runs many more (``fuzz``).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

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
from sqlalchemy import text
from uuid_utils.compat import uuid7

from shop.adapters.db.orders import SqlOrders
from shop.adapters.db.purchase_statements import ADD, ADD_ORDERS, QUOTES
from shop.adapters.db.reservation_claims import ORDER, VOID, mark_generation_lost
from shop.bootstrap import Container
from shop.domain.errors import OptionWithdrawn, Unauthorized
from shop.domain.orders.model import (
    OptionPrice,
    Order,
    OrderLine,
    OrderRules,
    PaymentMethod,
    PlaceOrder,
    Quote,
    reservation_key,
)
from shop.domain.stock.model import Line, merge_lines
from tests.conftest import reset_state
from tests.factories import make_option, make_product, make_user

T = TypeVar("T")

USERS = 2
PRICES = (300, 9_000)  # the listed options
LOST_GENERATION = "generation-lost"
ALIVE_GENERATION = "generation-alive"
KINDS = (
    ("fresh",) * 3 + ("twin",) * 3 + ("retry",) * 2 + ("voided", "withdrawn", "lost", "stranger")
)
STATEMENTS = {
    ADD_ORDERS: "batched add",
    QUOTES: "batched quote",
    ADD: "single add (a lone order, or a broken batch's orders one by one)",
}
PICK = st.integers(0, 63)  # an index into whatever the step chooses from, taken modulo its size


class Harness:
    """Runs the machine's steps on the test's event loop (hypothesis drives a synchronous
    machine in a thread; the connections live on this loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, container: Container) -> None:
        self.loop = loop
        self.container = container
        self.examples = 0
        # What the callers got, by kind: a run that never met a kind proved nothing about it.
        self.seen: Counter[str] = Counter()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=120)


class TalliedOrders(SqlOrders):
    """The real repository, tallying the multi-row statements it sends: a run whose bursts
    never shared a statement would not test the batches."""

    def __init__(self, harness: Harness, max_batch: int) -> None:
        super().__init__(harness.container.engine, max_batch=max_batch)
        self._seen = harness.seen

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        if sql in STATEMENTS:
            self._seen[STATEMENTS[sql]] += 1
        return await super()._fetch(sql, *args)


@dataclass(frozen=True)
class Key:
    """A (customer, Idempotency-Key) and the body its first request sent; retries resend it."""

    user_id: uuid.UUID
    idempotency_key: str
    lines: tuple[Line, ...]

    @property
    def reservation_key(self) -> str:
        return reservation_key(self.user_id, self.idempotency_key)


@dataclass(frozen=True)
class Add:
    key: Key
    order: Order
    generation: str | None


def batch_machine(harness: Harness, max_batch: int) -> type[RuleBasedStateMachine]:
    container = harness.container

    class OrderBatchMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.orders = TalliedOrders(harness, max_batch)
            self.users: list[uuid.UUID] = []
            self.prices: dict[int, OptionPrice] = {}  # every option, the withdrawn one too
            self.listed: list[int] = []
            self.withdrawn = 0
            self.strangers: set[uuid.UUID] = set()  # customers without an account
            self.keys: list[Key] = []
            self.next_key = 0
            # The model: the claim on each reservation key (ORDER with its order, or VOID),
            # and every order whose add returned True.
            self.claims: dict[str, str] = {}
            self.order_of: dict[str, uuid.UUID] = {}
            self.written: dict[uuid.UUID, Add] = {}
            self.refused: set[uuid.UUID] = set()
            harness.examples += 1
            harness.run(self._begin())

        async def _begin(self) -> None:
            await reset_state(container)
            self.users = [(await make_user(container))[0] for _ in range(USERS)]
            for price in (*PRICES, 700):
                product = await make_product(container, price=price)
                option = await make_option(container, stock=0, price=price, product_id=product)
                self.prices[option] = OptionPrice(option, product, price)
                self.listed.append(option)
            # The last one's product is deleted (the option goes with it): withdrawn.
            self.withdrawn = self.listed.pop()
            async with container.engine.begin() as conn:
                await conn.execute(
                    text("DELETE FROM product WHERE id = :id"),
                    {"id": self.prices[self.withdrawn].product_id},
                )
                await mark_generation_lost(conn, LOST_GENERATION)

        # -- building the calls --------------------------------------------------------------

        def _fresh(self, user: int, picks: list[tuple[int, int]], kind: str) -> Key:
            lines = [Line(self.listed[option % len(self.listed)], qty) for option, qty in picks]
            if kind == "withdrawn":
                lines.append(Line(self.withdrawn, 1))
            user_id = self.users[user]
            if kind == "stranger":  # a validly signed token that outlived its account
                user_id = uuid.uuid4()
                self.strangers.add(user_id)
            key = Key(user_id, f"key-{self.next_key}", tuple(merge_lines(lines)))
            self.next_key += 1
            return key

        def _order(self, key: Key) -> Order:
            cmd = PlaceOrder(
                user_id=key.user_id,
                idempotency_key=key.idempotency_key,
                lines=key.lines,
                payment_method=PaymentMethod.CARD,
                shipping_address="1 Main St",
            )
            return Order.place(
                cmd,
                cmd.lines,
                self.prices,
                order_id=uuid7(),
                now=datetime.now(UTC),
                rules=OrderRules(),
            )

        def _adds(self, draws: list[tuple[str, int, int, list[tuple[int, int]]]]) -> list[Add]:
            """The burst's adds. Every add of one key carries that key's body and generation,
            as every attempt of one purchase does (one reservation per key)."""
            adds: list[Add] = []
            fresh: list[Add] = []
            earlier = list(self.keys)
            voided = [key for key in earlier if self.claims.get(key.reservation_key) == VOID]
            for kind, user, pick, picks in draws:
                if kind == "twin" and fresh:
                    first = fresh[pick % len(fresh)]
                    adds.append(Add(first.key, self._order(first.key), first.generation))
                    continue
                if kind == "retry" and earlier:
                    key = earlier[pick % len(earlier)]
                    adds.append(Add(key, self._order(key), None))
                    continue
                if kind == "voided" and voided:
                    key = voided[pick % len(voided)]
                    adds.append(Add(key, self._order(key), None))
                    continue
                key = self._fresh(user, picks, kind)
                generation = (
                    LOST_GENERATION if kind == "lost" else (None, ALIVE_GENERATION)[pick % 2]
                )
                add = Add(key, self._order(key), generation)
                fresh.append(add)
                adds.append(add)
                self.keys.append(key)
            return adds

        # -- rules -----------------------------------------------------------------------------

        @rule(
            draws=st.lists(
                st.tuples(
                    st.sampled_from(KINDS),
                    st.integers(0, USERS - 1),
                    PICK,
                    st.lists(
                        st.tuples(st.integers(0, 1), st.integers(1, 3)), min_size=1, max_size=2
                    ),
                ),
                min_size=1,
                max_size=12,
            ),
            quotes=st.lists(PICK, max_size=3),
            void=st.one_of(st.none(), PICK),
            rnd=st.randoms(use_true_random=False),
        )
        def burst(
            self,
            draws: list[tuple[str, int, int, list[tuple[int, int]]]],
            quotes: list[int],
            void: int | None,
            rnd: random.Random,
        ) -> None:
            """Adds started together (sharing batches), with quotes and perhaps an abandon."""
            before = dict(self.claims), dict(self.order_of)
            adds = self._adds(draws)
            quoted = [self.keys[pick % len(self.keys)] for pick in quotes] if self.keys else []
            voided = None if void is None else self.keys[void % len(self.keys)]
            calls: list[tuple[str, Any]] = [("add", add) for add in adds]
            calls += [("quote", key) for key in quoted]
            if voided is not None:
                calls.append(("void", voided))
            # Shuffled before any coroutine exists: the shuffle draws, and a draw may end the
            # example (hypothesis stops it), which would leave started calls never awaited.
            rnd.shuffle(calls)
            results = harness.run(
                self._gather([self._call(kind, subject) for kind, subject in calls])
            )
            outcomes = [
                (kind, subject, got) for (kind, subject), got in zip(calls, results, strict=True)
            ]
            self._record(before, outcomes)

        @precondition(lambda self: bool(self.keys))
        @rule(pick=PICK)
        def void(self, pick: int) -> None:
            """The sweep (or a purchase whose write failed) claims a known key void."""
            key = self.keys[pick % len(self.keys)]
            before = dict(self.claims), dict(self.order_of)
            got = harness.run(self.orders.abandon(key.reservation_key))
            self._record(before, [("void", key, got)])

        def _call(self, kind: str, subject: Any) -> Coroutine[Any, Any, Any]:
            if kind == "add":
                return self.orders.add(subject.order, stock_generation=subject.generation)
            if kind == "quote":
                return self.orders.quote(
                    subject.user_id, subject.idempotency_key, self._ids(subject)
                )
            return self.orders.abandon(subject.reservation_key)

        async def _gather(self, calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
            return list(await asyncio.gather(*calls, return_exceptions=True))

        def _ids(self, key: Key) -> list[int]:
            return [line.option_id for line in key.lines]

        # -- what each caller got ------------------------------------------------------------

        def _record(
            self,
            before: tuple[dict[str, str], dict[str, uuid.UUID]],
            outcomes: list[tuple[str, Any, Any]],
        ) -> None:
            """Check each outcome against the claims before the step, then update the model."""
            claims_before, orders_before = before
            for _, _, got in outcomes:
                if isinstance(got, BaseException) and not isinstance(
                    got, OptionWithdrawn | Unauthorized
                ):
                    raise got
            won: dict[str, list[Add]] = {}
            voided: set[str] = set()
            for kind, subject, got in outcomes:
                if kind == "add":
                    add: Add = subject
                    rkey = add.key.reservation_key
                    if got is True:
                        won.setdefault(rkey, []).append(add)
                    else:
                        self.refused.add(add.order.id)
                elif kind == "void" and got is True:
                    voided.add(subject.reservation_key)
            for kind, subject, got in outcomes:
                if kind == "add":
                    self._check_add(
                        subject, got, claims_before.get(subject.key.reservation_key), voided
                    )
                elif kind == "void":
                    self._check_void(subject, got, claims_before, won)
            for rkey, winners in won.items():
                assert len(winners) == 1, f"{rkey}: {len(winners)} orders written"
                assert rkey not in voided, f"{rkey}: written and claimed void"
                self.claims[rkey] = ORDER
                self.order_of[rkey] = winners[0].order.id
                self.written[winners[0].order.id] = winners[0]
            for rkey in voided:
                self.claims.setdefault(rkey, VOID)
            # An unclaimed key that a listed, live add tried must now be claimed by someone.
            for kind, subject, _ in outcomes:
                if kind == "add" and self._eligible(subject):
                    rkey = subject.key.reservation_key
                    assert rkey in self.claims, f"{rkey}: a live add wrote nothing"
            for kind, subject, got in outcomes:
                if kind == "quote":
                    self._check_quote(subject, got, claims_before, orders_before)

        def _eligible(self, add: Add) -> bool:
            """An add that, on an unclaimed key, must write (or lose to a twin or the sweep)."""
            return (
                add.generation != LOST_GENERATION
                and self.withdrawn not in self._ids(add.key)
                and add.key.user_id not in self.strangers
            )

        def _check_add(self, add: Add, got: Any, claim: str | None, voided: set[str]) -> None:
            rkey = add.key.reservation_key
            harness.seen[self._kind(add, got, claim)] += 1
            if claim is not None:
                assert got is False, f"{rkey} was claimed {claim}, add gave {got!r}"
            elif self.withdrawn in self._ids(add.key):
                # A concurrent abandon may claim the key first: then nothing is inserted.
                allowed: tuple[Any, ...] = (False,) if rkey in voided else ()
                assert isinstance(got, OptionWithdrawn) or got in allowed, (
                    f"{rkey}: withdrawn option, add gave {got!r}"
                )
                if isinstance(got, OptionWithdrawn):
                    assert got.option_id == self.withdrawn
            elif add.key.user_id in self.strangers:
                allowed = (False,) if rkey in voided else ()
                assert isinstance(got, Unauthorized) or got in allowed, (
                    f"{rkey}: no such account, add gave {got!r}"
                )
            elif add.generation == LOST_GENERATION:
                assert got is False, f"{rkey}: lost generation, add gave {got!r}"
            else:
                assert got in (True, False), f"{rkey}: add gave {got!r}"

        def _kind(self, add: Add, got: Any, claim: str | None) -> str:
            if claim is not None:
                return f"add on a key claimed {claim}"
            if self.withdrawn in self._ids(add.key):
                return "add of a withdrawn option"
            if add.key.user_id in self.strangers:
                return "add by a deleted account"
            if add.generation == LOST_GENERATION:
                return "add from a lost generation"
            return "add written" if got is True else "add lost to a twin or an abandon"

        def _check_void(
            self,
            key: Key,
            got: Any,
            claims_before: dict[str, str],
            won: dict[str, list[Add]],
        ) -> None:
            rkey = key.reservation_key
            claim = claims_before.get(rkey)
            expected = claim == VOID if claim is not None else rkey not in won
            harness.seen[f"abandon {'won' if got is True else 'lost'}"] += 1
            assert got is expected, f"{rkey} claimed {claim}, written {rkey in won}: abandon {got}"

        def _check_quote(
            self,
            key: Key,
            got: Any,
            claims_before: dict[str, str],
            orders_before: dict[str, uuid.UUID],
        ) -> None:
            """A quote racing the burst sees the key as it was before or as it is after."""
            assert isinstance(got, Quote), got
            harness.seen["quote during a burst"] += 1
            rkey = key.reservation_key
            assert got.existing_order_id in (orders_before.get(rkey), self.order_of.get(rkey))
            assert got.abandoned in (claims_before.get(rkey) == VOID, self.claims.get(rkey) == VOID)
            assert got.prices == self._listed_prices(key)

        def _listed_prices(self, key: Key) -> dict[int, OptionPrice]:
            return {
                option: self.prices[option] for option in self._ids(key) if option != self.withdrawn
            }

        # -- invariants, read from PostgreSQL ---------------------------------------------------

        @invariant()
        def stored_state_matches(self) -> None:
            harness.run(self._check_stored())

        async def _check_stored(self) -> None:
            async with container.engine.connect() as conn:
                orders = (
                    await conn.execute(
                        text(
                            "SELECT id, user_id, idempotency_key, reservation_key, total,"
                            " status FROM purchase_order"
                        )
                    )
                ).all()
                claims: dict[str, str] = dict(
                    (await conn.execute(text("SELECT key, outcome FROM reservation_claim"))).all()
                )
                line_rows = (
                    await conn.execute(
                        text(
                            "SELECT order_id, option_id, product_id, quantity, unit_price"
                            " FROM order_line ORDER BY order_id, option_id"
                        )
                    )
                ).all()
            per_key = Counter(row.reservation_key for row in orders)
            assert all(count == 1 for count in per_key.values()), per_key.most_common(3)
            for row in orders:
                assert claims.get(row.reservation_key) == ORDER, row
            for rkey, outcome in claims.items():
                if outcome == VOID:
                    assert rkey not in per_key, f"{rkey} claimed void but has an order"
            assert claims == self.claims
            assert {row.id for row in orders} == set(self.written)
            assert not self.refused & set(self.written)
            lines: dict[uuid.UUID, list[OrderLine]] = {}
            for line in line_rows:
                lines.setdefault(line.order_id, []).append(
                    OrderLine(
                        option_id=int(line.option_id),
                        product_id=int(line.product_id),
                        quantity=int(line.quantity),
                        unit_price=int(line.unit_price),
                    )
                )
            for row in orders:
                submitted = self.written[row.id].order
                assert (row.user_id, row.idempotency_key, row.reservation_key, int(row.total)) == (
                    submitted.user_id,
                    submitted.idempotency_key,
                    submitted.reservation_key,
                    submitted.total,
                )
                assert row.status == submitted.status.value
                assert lines.get(row.id, []) == sorted(
                    submitted.lines, key=lambda line: line.option_id
                )
            assert {rkey: order_id for rkey, order_id in self.order_of.items()} == {
                row.reservation_key: row.id for row in orders
            }
            # Every known key quoted at once (one batch): its order and void claim as stored.
            quotes = await asyncio.gather(
                *(
                    self.orders.quote(key.user_id, key.idempotency_key, self._ids(key))
                    for key in self.keys
                )
            )
            for key, quote in zip(self.keys, quotes, strict=True):
                rkey = key.reservation_key
                assert quote.existing_order_id == self.order_of.get(rkey), rkey
                assert quote.abandoned == (claims.get(rkey) == VOID), rkey
                assert quote.prices == self._listed_prices(key), rkey

    return OrderBatchMachine


PROFILES = {
    # CI: a few short runs, seconds in all.
    "ci": hypothesis_settings(max_examples=10, stateful_step_count=12, deadline=None),
    # ``-m fuzz``: the nightly-style run.
    "fuzz": hypothesis_settings(max_examples=300, stateful_step_count=30, deadline=None),
}


SEEN = (
    "add written",
    "add lost to a twin or an abandon",
    "add on a key claimed order",
    "add on a key claimed void",
    "add of a withdrawn option",
    "add by a deleted account",
    "add from a lost generation",
    "abandon won",
    "abandon lost",
    "quote during a burst",
    *STATEMENTS.values(),
)


async def _run_machine(container: Container, max_batch: int, profile: str) -> None:
    harness = Harness(asyncio.get_running_loop(), container)
    machine = batch_machine(harness, max_batch)
    try:
        await asyncio.to_thread(run_state_machine_as_test, machine, settings=PROFILES[profile])
    finally:
        print(
            f"order batch model, max_batch {max_batch}, {profile}: {harness.examples} sequences,"
            f" {dict(harness.seen)}"
        )
    assert not [kind for kind in SEEN if not harness.seen[kind]], harness.seen


# 128 puts a whole burst in the batch after the first call's; 3 splits it over several.
@pytest.mark.parametrize("max_batch", [128, 3])
async def test_batched_order_writes_keep_their_invariants(clean: Container, max_batch: int) -> None:
    await _run_machine(clean, max_batch, "ci")


@pytest.mark.fuzz
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("max_batch", [128, 3])
async def test_batched_order_writes_keep_their_invariants_at_length(
    clean: Container, max_batch: int
) -> None:
    await _run_machine(clean, max_batch, "fuzz")

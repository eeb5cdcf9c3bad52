"""The payment use cases against in-memory ports: the gateway's events in any order.

The state machine at the end throws events at one order in random order — successes,
declines, refund outcomes, replays of any earlier event, expiry, cancel — and checks after
every step: the order is paid at most once, it is paid-for iff one succeeded payment is not
refunded, and every success the order could not take has a refund asked for.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from shop.domain.errors import InvalidInput, InvalidState, NotFound
from shop.domain.orders import services as order_services
from shop.domain.orders.model import Order, OrderRules, OrderStatus, PaymentMethod, PlaceOrder
from shop.domain.payments import services
from shop.domain.payments.model import (
    EventType,
    GatewayEvent,
    Payment,
    PaymentStatus,
    RefundReason,
)
from shop.domain.stock.model import Line
from tests.unit.fakes import FakeClock, FakeOrders, FakeStock
from tests.unit.payment_fakes import FakeGateway, FakePayments

ALICE = uuid.UUID(int=1)
RULES = OrderRules(card_payment_ttl=timedelta(minutes=15), refund_window=timedelta(days=3))


class Shop:
    def __init__(self) -> None:
        self.stock = FakeStock({1: 5})
        self.orders = FakeOrders({1: 700})
        self.payments = FakePayments(self.orders)
        self.gateway = FakeGateway()
        self.clock = FakeClock()

    async def place(self, key: str = "k1") -> Order:
        placed = await order_services.place_order(
            PlaceOrder(ALICE, key, (Line(1, 2),), PaymentMethod.CARD, "1 Main St"),
            rules=RULES,
            stock=self.stock,
            orders=self.orders,
            clock=self.clock,
        )
        return placed.order

    async def start(self, order: Order) -> Payment:
        started = await services.start_payment(
            order.id,
            user_id=ALICE,
            currency="EUR",
            payments=self.payments,
            gateway=self.gateway,
            clock=self.clock,
        )
        return started.payment

    async def tell(
        self,
        payment: Payment,
        kind: EventType,
        *,
        event_id: str | None = None,
        amount: int | None = None,
        refund_id: str | None = None,
    ) -> services.Outcome:
        event = GatewayEvent(
            id=event_id or f"evt_{uuid.uuid4().hex}",
            type=kind,
            created=0,
            payment_id=payment.id,
            amount=payment.amount if amount is None else amount,
            currency=payment.currency,
            refund_id=refund_id,
        )
        return await services.accept_event(
            event,
            payments=self.payments,
            gateway=self.gateway,
            orders=self.orders,
            stock=self.stock,
            clock=self.clock,
        )

    def order(self, order: Order) -> Order:
        return self.orders.rows[order.id]

    def payment(self, payment: Payment) -> Payment:
        return self.payments.rows[payment.id]


async def test_a_success_pays_the_order_once_and_a_replay_changes_nothing() -> None:
    shop = Shop()
    order = await shop.place()
    payment = await shop.start(order)
    assert await shop.tell(payment, EventType.PAYMENT_SUCCEEDED, event_id="evt_a") == "applied"
    paid_at = shop.order(order).paid_at
    shop.clock.advance(minutes=1)
    assert await shop.tell(payment, EventType.PAYMENT_SUCCEEDED, event_id="evt_a") == "replayed"
    assert shop.order(order).status is OrderStatus.PAID
    assert shop.order(order).paid_at == paid_at


async def test_starting_twice_answers_the_open_payment() -> None:
    shop = Shop()
    order = await shop.place()
    first, second = await shop.start(order), await shop.start(order)
    assert first.id == second.id
    assert len(shop.payments.rows) == 1


async def test_no_payment_starts_past_the_deadline_or_for_someone_else() -> None:
    shop = Shop()
    order = await shop.place()
    with pytest.raises(NotFound):
        await services.start_payment(
            order.id,
            user_id=uuid.UUID(int=2),
            currency="EUR",
            payments=shop.payments,
            gateway=shop.gateway,
            clock=shop.clock,
        )
    shop.clock.advance(minutes=15)
    with pytest.raises(InvalidState, match="deadline"):
        await shop.start(order)


async def test_a_mismatched_amount_changes_nothing_not_even_the_event_log() -> None:
    shop = Shop()
    order = await shop.place()
    payment = await shop.start(order)
    with pytest.raises(InvalidInput):
        await shop.tell(payment, EventType.PAYMENT_SUCCEEDED, event_id="evt_x", amount=1)
    assert shop.order(order).status is OrderStatus.PENDING_PAYMENT
    assert shop.payments.events == {}


async def test_a_success_after_expiry_is_refunded_and_the_order_stays_expired() -> None:
    shop = Shop()
    order = await shop.place()
    payment = await shop.start(order)
    shop.clock.advance(minutes=16)
    await shop.tell(payment, EventType.PAYMENT_SUCCEEDED)
    assert shop.order(order).status is OrderStatus.EXPIRED
    assert await shop.stock.available([1]) == {1: 5}
    late = shop.payment(payment)
    assert (late.status, late.refund_reason) == (PaymentStatus.REFUND_PENDING, RefundReason.LATE)
    assert shop.gateway.refunds == [(payment.id, late.refund_id)]
    await shop.tell(payment, EventType.REFUND_SUCCEEDED, refund_id=late.refund_id)
    assert shop.payment(payment).status is PaymentStatus.REFUNDED
    assert shop.order(order).status is OrderStatus.EXPIRED


async def test_a_refund_the_gateway_never_answered_is_asked_again_with_the_same_id() -> None:
    shop = Shop()
    order = await shop.place()
    payment = await shop.start(order)
    shop.clock.advance(minutes=16)
    await shop.tell(payment, EventType.PAYMENT_SUCCEEDED)
    refund_id = shop.payment(payment).refund_id

    async def resend() -> int:
        return await services.resend_pending_refunds(
            payments=shop.payments,
            gateway=shop.gateway,
            clock=shop.clock,
            after=timedelta(minutes=15),
        )

    assert await resend() == 0, "too early: the first ask may still be on its way"
    shop.clock.advance(minutes=15)
    assert await resend() == 1
    assert shop.gateway.refunds == [(payment.id, refund_id)] * 2
    await shop.tell(payment, EventType.REFUND_SUCCEEDED, refund_id=refund_id)
    shop.clock.advance(minutes=30)
    assert await resend() == 0


async def test_a_customer_refund_ends_refunded_or_back_to_delivered() -> None:
    shop = Shop()
    order = await shop.place()
    payment = await shop.start(order)
    await shop.tell(payment, EventType.PAYMENT_SUCCEEDED)
    await order_services.ship_order(order.id, orders=shop.orders, clock=shop.clock)
    await order_services.deliver_order(order.id, orders=shop.orders, clock=shop.clock)

    async def ask() -> str:
        await services.request_refund(
            order.id,
            user_id=ALICE,
            payments=shop.payments,
            gateway=shop.gateway,
            clock=shop.clock,
            rules=RULES,
        )
        refund_id = shop.payment(payment).refund_id
        assert refund_id is not None
        return refund_id

    first = await ask()
    assert shop.order(order).status is OrderStatus.REFUND_PENDING
    await shop.tell(payment, EventType.REFUND_FAILED, refund_id=first)
    assert shop.order(order).status is OrderStatus.DELIVERED
    assert shop.payment(payment).refund_failed_at is not None
    second = await ask()
    assert second != first
    await shop.tell(payment, EventType.REFUND_SUCCEEDED, refund_id=second)
    assert shop.order(order).status is OrderStatus.REFUNDED
    assert shop.payment(payment).status is PaymentStatus.REFUNDED


class PaymentEvents(RuleBasedStateMachine):
    """One order, up to three payment attempts, the gateway's events in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.shop = Shop()
        self.order: Order | None = None
        self.attempts: list[Payment] = []
        self.sent: list[tuple[Payment, EventType, str, str | None]] = []
        self.paid_at_first: object = None

    async def _setup(self) -> Order:
        if self.order is None:
            self.order = await self.shop.place()
        return self.order

    def run(self, coro: object) -> None:
        import asyncio

        async def go() -> None:
            # A refusal is a legal answer; the invariants judge the state.
            with contextlib.suppress(InvalidState, InvalidInput):
                await coro  # type: ignore[misc]

        asyncio.run(go())

    @rule()
    def start_payment(self) -> None:
        async def go() -> None:
            order = await self._setup()
            if len(self.attempts) < 3:
                payment = await self.shop.start(order)
                if all(p.id != payment.id for p in self.attempts):
                    self.attempts.append(payment)

        self.run(go())

    @rule(n=st.integers(0, 2), kind=st.sampled_from(list(EventType)))
    def gateway_event(self, n: int, kind: EventType) -> None:
        async def go() -> None:
            if n >= len(self.attempts):
                return
            payment = self.attempts[n]
            refund_id = self.shop.payments.rows[payment.id].refund_id
            event_id = f"evt_{uuid.uuid4().hex}"
            self.sent.append((payment, kind, event_id, refund_id))
            await self.shop.tell(payment, kind, event_id=event_id, refund_id=refund_id)

        self.run(go())

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        if not self.sent:
            return
        payment, kind, event_id, refund_id = data.draw(st.sampled_from(self.sent))
        self.run(self.shop.tell(payment, kind, event_id=event_id, refund_id=refund_id))

    @rule(minutes=st.integers(1, 20))
    def time_passes(self, minutes: int) -> None:
        self.shop.clock.advance(minutes=minutes)

    @rule()
    def expire(self) -> None:
        async def go() -> None:
            order = await self._setup()
            await order_services.expire_order(
                order.id, orders=self.shop.orders, stock=self.shop.stock, clock=self.shop.clock
            )

        self.run(go())

    @rule()
    def cancel(self) -> None:
        async def go() -> None:
            order = await self._setup()
            await services.cancel_order(
                order.id,
                user_id=ALICE,
                payments=self.shop.payments,
                gateway=self.shop.gateway,
                orders=self.shop.orders,
                stock=self.shop.stock,
                clock=self.shop.clock,
            )

        self.run(go())

    @invariant()
    def paid_at_most_once(self) -> None:
        if self.order is None:
            return
        paid_at = self.shop.orders.rows[self.order.id].paid_at
        if self.paid_at_first is None:
            self.paid_at_first = paid_at
        assert paid_at == self.paid_at_first or self.paid_at_first is None

    @invariant()
    def paid_iff_one_success_is_kept(self) -> None:
        if self.order is None:
            return
        order = self.shop.orders.rows[self.order.id]
        kept = [p for p in self.shop.payments.rows.values() if p.status is PaymentStatus.SUCCEEDED]
        settled = order.status in OrderStatus.PAID_FOR and order.status not in (
            OrderStatus.REFUND_PENDING,
            OrderStatus.REFUNDED,
        )
        assert settled == (len(kept) == 1)
        assert len(kept) <= 1

    @invariant()
    def every_success_the_order_could_not_take_is_refunded(self) -> None:
        for payment in self.shop.payments.rows.values():
            if payment.refund_reason in (RefundReason.LATE, RefundReason.CANCELLED):
                assert payment.status in (
                    PaymentStatus.REFUND_PENDING,
                    PaymentStatus.REFUNDED,
                    PaymentStatus.REFUND_FAILED,
                )
                assert payment.refund_id is not None
                assert (payment.id, payment.refund_id) in self.shop.gateway.refunds
        if self.order is not None:
            order = self.shop.orders.rows[self.order.id]
            if order.status.releases_stock:
                assert not [
                    p
                    for p in self.shop.payments.rows.values()
                    if p.status is PaymentStatus.SUCCEEDED
                ], "a closed order keeps no money"


PaymentEvents.TestCase.settings = settings(
    max_examples=int(os.environ.get("SHOP_TEST_PAYMENT_EXAMPLES", "60")),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_payment_events = PaymentEvents.TestCase

"""The order use cases against in-memory ports: orderings, idempotency, stock hand-backs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from shop.domain.errors import (
    InvalidInput,
    InvalidState,
    NotFound,
    PurchaseLimitExceeded,
    ReservationLost,
    SoldOut,
)
from shop.domain.orders import services
from shop.domain.orders.model import (
    Order,
    OrderRules,
    OrderStatus,
    PaymentMethod,
    PlaceOrder,
)
from shop.domain.stock.model import Line
from tests.unit.fakes import FakeClock, FakeOrders, FakeStock

ALICE = uuid.UUID(int=1)
BOB = uuid.UUID(int=2)
RULES = OrderRules(card_payment_ttl=timedelta(minutes=15), refund_window=timedelta(days=3))


class Shop:
    """The ports wired together, as the composition root would."""

    def __init__(self, stock: dict[int, int] | None = None, *, rules: OrderRules = RULES) -> None:
        self.stock = FakeStock(stock if stock is not None else {1: 5, 2: 5})
        self.orders = FakeOrders({1: 700, 2: 1_500})
        self.clock = FakeClock()
        self.rules = rules

    async def place(
        self,
        *lines: tuple[int, int],
        user: uuid.UUID = ALICE,
        key: str = "k1",
        address: str = "1 Main St",
    ) -> Order:
        placed = await services.place_order(
            PlaceOrder(
                user_id=user,
                idempotency_key=key,
                lines=tuple(Line(o, q) for o, q in (lines or ((1, 1),))),
                payment_method=PaymentMethod.CARD,
                shipping_address=address,
            ),
            rules=self.rules,
            stock=self.stock,
            orders=self.orders,
            clock=self.clock,
        )
        return placed.order

    async def cancel(self, order: Order, user: uuid.UUID = ALICE) -> Order:
        return await services.cancel_order(
            order.id, user_id=user, orders=self.orders, stock=self.stock, clock=self.clock
        )

    async def pay(self, order: Order, amount: int | None = None) -> Order:
        """What the payment module does on the gateway's success, under the order's lock
        (the webhook path itself is tested in tests/unit/test_payment_services.py and over
        HTTP)."""
        async with self.orders.locked(order.id) as locked:
            locked.pay(order.total if amount is None else amount, self.clock.now())
        return locked

    async def expire(self, order: Order) -> bool:
        return await services.expire_order(
            order.id, orders=self.orders, stock=self.stock, clock=self.clock
        )

    async def left(self, option_id: int = 1) -> int:
        return (await self.stock.available([option_id]))[option_id]


async def test_placing_reserves_writes_and_confirms() -> None:
    shop = Shop()
    order = await shop.place((1, 2))
    assert await shop.left() == 3
    assert shop.stock.reservations[order.reservation_key].status == "confirmed"
    assert shop.orders.rows[order.id].status is OrderStatus.PENDING_PAYMENT


async def test_sold_out_writes_nothing() -> None:
    shop = Shop({1: 1})
    with pytest.raises(SoldOut):
        await shop.place((1, 2))
    assert shop.orders.rows == {}
    assert await shop.left() == 1


async def test_an_unknown_option_is_refused_before_any_reservation() -> None:
    shop = Shop()
    with pytest.raises(NotFound, match="option 99"):
        await shop.place((99, 1))
    assert shop.stock.reserve_calls == 0


async def test_a_failed_write_gives_the_units_back_at_once() -> None:
    shop = Shop()
    shop.orders.failing_add = RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        await shop.place((1, 2))
    assert await shop.left() == 5
    assert shop.orders.rows == {}


async def test_a_failed_write_keeps_the_units_a_racing_twin_wrote_an_order_for() -> None:
    shop = Shop()
    twin = await Shop().place((1, 2))
    shop.orders.before_add.append(twin)
    shop.orders.failing_add = RuntimeError("connection reset")
    await shop.stock.reserve([Line(1, 2)], key=twin.reservation_key)
    with pytest.raises(RuntimeError):
        await shop.place((1, 2))
    assert await shop.left() == 3, "the twin's order still holds its units"


async def test_the_same_request_again_returns_the_same_order_and_reserves_once() -> None:
    shop = Shop()
    first = await shop.place((1, 2))
    again = await shop.place((1, 2))
    assert again.id == first.id
    assert shop.stock.reserve_calls == 1
    assert await shop.left() == 3
    assert len(shop.orders.rows) == 1


async def test_a_twin_that_lost_the_write_answers_with_the_winners_order() -> None:
    shop = Shop()
    winner = await Shop().place((1, 2))
    await shop.stock.reserve([Line(1, 2)], key=winner.reservation_key)
    shop.orders.before_add.append(winner)
    placed = await shop.place((1, 2))
    assert placed.id == winner.id
    assert await shop.left() == 3, "the twins shared one reservation"


async def test_the_same_key_with_another_body_is_refused() -> None:
    shop = Shop()
    await shop.place((1, 2))
    with pytest.raises(InvalidInput, match="Idempotency-Key"):
        await shop.place((1, 3))
    with pytest.raises(InvalidInput, match="Idempotency-Key"):
        await shop.place((1, 2), address="elsewhere")
    assert await shop.left() == 3


async def test_another_body_on_a_reservation_whose_order_was_never_written_is_refused() -> None:
    shop = Shop()
    order_key = f"order:{ALICE}:k1"
    await shop.stock.reserve([Line(1, 1)], key=order_key)  # the first attempt crashed here
    with pytest.raises(InvalidInput, match="Idempotency-Key"):
        await shop.place((1, 2))
    assert shop.orders.rows == {}
    assert shop.stock.reservations[order_key].status == "pending", "the sweep's to release"


async def test_keys_are_per_customer() -> None:
    shop = Shop()
    alice = await shop.place((1, 1), user=ALICE, key="same")
    bob = await shop.place((1, 1), user=BOB, key="same")
    assert alice.id != bob.id
    assert await shop.left() == 3


async def test_an_order_on_a_lost_reservation_is_voided() -> None:
    shop = Shop()
    key = f"order:{ALICE}:k1"
    await shop.stock.reserve([Line(1, 2)], key=key)
    await shop.stock.release(key)  # swept as abandoned before the retry came
    with pytest.raises(ReservationLost):
        await shop.place((1, 2))
    (voided,) = shop.orders.rows.values()
    assert voided.status is OrderStatus.CANCELLED
    assert not voided.awaits_stock_release
    assert await shop.left() == 5, "nothing was sold on units nobody held"


async def test_the_purchase_limit_is_handed_to_the_reservation() -> None:
    shop = Shop(rules=OrderRules(purchase_limit_per_option=1))
    await shop.place((1, 1), key="a")
    with pytest.raises(PurchaseLimitExceeded):
        await shop.place((1, 1), key="b")
    await shop.place((1, 1), user=BOB, key="a")


async def test_cancelling_puts_the_units_back_on_sale() -> None:
    shop = Shop()
    order = await shop.place((1, 2))
    cancelled = await shop.cancel(order)
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.stock_released_at is not None
    assert await shop.left() == 5


async def test_cancelling_twice_returns_the_units_once() -> None:
    shop = Shop()
    order = await shop.place((1, 2))
    await shop.cancel(order)
    await shop.cancel(order)
    assert await shop.left() == 5


async def test_a_release_that_fails_after_the_cancel_is_finished_by_the_sweep() -> None:
    shop = Shop()
    order = await shop.place((1, 2))
    shop.stock.failing_release = True
    with pytest.raises(ConnectionError):
        await shop.cancel(order)
    assert shop.orders.rows[order.id].status is OrderStatus.CANCELLED
    assert await shop.left() == 3
    shop.stock.failing_release = False
    released = await services.release_stock_of_closed_orders(
        orders=shop.orders, stock=shop.stock, clock=shop.clock
    )
    assert released == 1
    assert await shop.left() == 5
    assert not shop.orders.rows[order.id].awaits_stock_release


async def test_someone_elses_order_is_not_found() -> None:
    shop = Shop()
    order = await shop.place((1, 1))
    with pytest.raises(NotFound):
        await services.get_order(order.id, user_id=BOB, orders=shop.orders)
    with pytest.raises(NotFound):
        await shop.cancel(order, user=BOB)
    assert shop.orders.rows[order.id].status is OrderStatus.PENDING_PAYMENT


async def test_expiry_gives_the_units_back_and_leaves_the_row() -> None:
    shop = Shop()
    order = await shop.place((1, 2))
    assert await shop.expire(order) is False, "not due yet"
    shop.clock.advance(minutes=15)
    assert await shop.expire(order) is True
    assert await shop.expire(order) is False
    assert shop.orders.rows[order.id].status is OrderStatus.EXPIRED
    assert await shop.left() == 5


async def test_the_expiry_job_leaves_a_paid_order_alone() -> None:
    shop = Shop()
    order = await shop.place((1, 2))
    await shop.pay(order)
    shop.clock.advance(days=30)
    assert await shop.expire(order) is False
    assert shop.orders.rows[order.id].status is OrderStatus.PAID
    assert await shop.left() == 3


async def test_a_late_payment_is_refused_by_the_order() -> None:
    shop = Shop()
    order = await shop.place((1, 2))
    shop.clock.advance(minutes=15)
    with pytest.raises(InvalidState, match="deadline"):
        await shop.pay(order)
    assert shop.orders.rows[order.id].status is OrderStatus.PENDING_PAYMENT
    assert await shop.left() == 3


async def test_a_wrong_amount_changes_nothing() -> None:
    shop = Shop()
    order = await shop.place((1, 2))
    with pytest.raises(InvalidInput):
        await shop.pay(order, amount=1)
    assert shop.orders.rows[order.id].status is OrderStatus.PENDING_PAYMENT


async def test_a_refund_keeps_the_units_sold() -> None:
    shop = Shop()
    order = await shop.place((1, 2))
    await shop.pay(order)
    await services.ship_order(order.id, orders=shop.orders, clock=shop.clock)
    await services.deliver_order(order.id, orders=shop.orders, clock=shop.clock)
    async with shop.orders.locked(order.id) as refunding:
        refunding.request_refund(shop.clock.now(), shop.rules.refund_window)
        refunding.complete_refund(shop.clock.now())
    assert refunding.status is OrderStatus.REFUNDED
    assert await shop.left() == 3


async def test_the_sweep_expires_only_overdue_unpaid_orders() -> None:
    shop = Shop({1: 10})
    overdue = [await shop.place((1, 1), key=f"due-{n}") for n in range(3)]
    paid = await shop.place((1, 1), key="paid")
    await shop.pay(paid)
    shop.clock.advance(minutes=10)
    fresh = await shop.place((1, 1), key="fresh")
    shop.clock.advance(minutes=5)
    expired = await services.expire_due_orders(
        orders=shop.orders, stock=shop.stock, clock=shop.clock, batch=2
    )
    assert expired == 3
    assert {o.id for o in overdue} == {
        o.id for o in shop.orders.rows.values() if o.status is OrderStatus.EXPIRED
    }
    assert shop.orders.rows[paid.id].status is OrderStatus.PAID
    assert shop.orders.rows[fresh.id].status is OrderStatus.PENDING_PAYMENT
    assert await shop.left() == 8


class SlowOrders(FakeOrders):
    """Orders whose row lock takes a while (a round trip), counting how many are held at once."""

    def __init__(self, prices: dict[int, int], *, failing: set[uuid.UUID] | None = None) -> None:
        super().__init__(prices)
        self.held = 0
        self.most_held = 0
        self.failing = failing if failing is not None else set()

    @asynccontextmanager
    async def locked(self, order_id: uuid.UUID) -> AsyncIterator[Order]:
        if order_id in self.failing:
            raise ConnectionError("the database went away")
        self.held += 1
        self.most_held = max(self.most_held, self.held)
        try:
            await asyncio.sleep(0.01)
            async with super().locked(order_id) as order:
                yield order
        finally:
            self.held -= 1


async def backlog(shop: Shop, count: int) -> list[Order]:
    """``count`` unpaid orders whose deadline has just passed."""
    made = [await shop.place((1, 1), key=f"drop-{n}") for n in range(count)]
    shop.clock.advance(minutes=15)
    return made


async def test_the_sweep_expires_a_backlog_concurrently_within_its_bound() -> None:
    shop = Shop({1: 40})
    orders = shop.orders = SlowOrders({1: 700})
    made = await backlog(shop, 30)
    expired = await services.expire_due_orders(
        orders=orders, stock=shop.stock, clock=shop.clock, batch=20, concurrency=4
    )
    assert expired == 30
    assert orders.most_held == 4, "concurrent, never more than the bound"
    assert all(orders.rows[o.id].status is OrderStatus.EXPIRED for o in made)
    assert all(orders.rows[o.id].stock_released_at is not None for o in made)
    assert await shop.left() == 40


async def test_one_order_failing_to_expire_does_not_hold_up_the_others() -> None:
    shop = Shop({1: 10})
    orders = shop.orders = SlowOrders({1: 700})
    made = await backlog(shop, 6)
    orders.failing.add(made[0].id)
    with pytest.raises(ConnectionError):
        await services.expire_due_orders(orders=orders, stock=shop.stock, clock=shop.clock, batch=4)
    assert [orders.rows[o.id].status for o in made] == [OrderStatus.PENDING_PAYMENT] + [
        OrderStatus.EXPIRED
    ] * 5, "the rest of its batch and the next batch expired"
    assert await shop.left() == 9
    orders.failing.clear()
    assert await services.expire_due_orders(orders=orders, stock=shop.stock, clock=shop.clock) == 1


async def test_the_list_hides_expired_orders_and_pages_newest_first() -> None:
    shop = Shop({1: 10})
    made = []
    for n in range(5):
        made.append(await shop.place((1, 1), key=f"o{n}"))
        shop.clock.advance(seconds=1)
    shop.clock.advance(minutes=15)
    await shop.expire(made[0])
    first = await services.list_orders(ALICE, orders=shop.orders, limit=3)
    assert [o.id for o in first.items] == [o.id for o in made[4:1:-1]]
    second = await services.list_orders(ALICE, orders=shop.orders, limit=3, after=first.next_cursor)
    assert [o.id for o in second.items] == [made[1].id]
    assert second.next_cursor is None
    with pytest.raises(InvalidInput):
        await services.list_orders(ALICE, orders=shop.orders, limit=0)

"""``SqlOrders`` on the real PostgreSQL: one-statement writes, row locks, the sweeps."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from shop.adapters.db.tables import OrderLineRow
from shop.bootstrap import Container
from shop.domain.errors import InvalidState, ReservationLost
from shop.domain.orders import services
from shop.domain.orders.model import (
    Order,
    OrderRules,
    OrderStatus,
    PaymentMethod,
    PlaceOrder,
)
from shop.domain.stock.model import Line
from tests.factories import make_option, make_user
from tests.orders_client import stock_and_ledger
from tests.payments_client import pay_in_domain
from tests.unit.fakes import FakeClock


async def buy(
    container: Container, user_id: uuid.UUID, *lines: tuple[int, int], key: str | None = None
) -> Order:
    placed = await services.place_order(
        PlaceOrder(
            user_id=user_id,
            idempotency_key=key or uuid.uuid4().hex,
            lines=tuple(Line(o, q) for o, q in lines),
            payment_method=PaymentMethod.CARD,
            shipping_address="1 Main St",
        ),
        rules=OrderRules(),
        stock=container.stock,
        orders=container.orders,
        clock=container.clock,
    )
    return placed.order


async def line_count(container: Container) -> int:
    async with container.engine.connect() as conn:
        count = await conn.execute(select(func.count()).select_from(OrderLineRow))
    return int(count.scalar_one())


async def test_an_order_and_its_lines_are_written_and_read_back_alike(clean: Container) -> None:
    a = await make_option(clean, stock=5, price=700)
    b = await make_option(clean, stock=5, price=1_500)
    user_id, _ = await make_user(clean)
    order = await buy(clean, user_id, (b, 1), (a, 2))
    assert await clean.orders.get(order.id) == order
    assert await clean.orders.find(user_id, order.idempotency_key) == order
    assert [line.option_id for line in order.lines] == sorted([a, b])
    assert order.total == 2 * 700 + 1_500


async def test_a_second_order_under_the_same_key_writes_nothing(clean: Container) -> None:
    option = await make_option(clean, stock=5)
    user_id, _ = await make_user(clean)
    order = await buy(clean, user_id, (option, 1), key="same")
    twin = dataclasses.replace(order, id=uuid.uuid4())
    assert await clean.orders.add(twin) is False
    assert await line_count(clean) == 1
    assert await clean.orders.get(twin.id) is None


async def test_the_quote_prices_known_options_and_finds_an_earlier_order(
    clean: Container,
) -> None:
    option = await make_option(clean, stock=5, price=321)
    user_id, _ = await make_user(clean)
    before = await clean.orders.quote(user_id, "k", [option, 999_999])
    assert before.existing_order_id is None
    assert {o: p.price for o, p in before.prices.items()} == {option: 321}
    order = await buy(clean, user_id, (option, 1), key="k")
    after = await clean.orders.quote(user_id, "k", [999_999])
    assert after.existing_order_id == order.id
    assert after.prices == {}


async def test_a_failed_transition_writes_nothing(clean: Container) -> None:
    option = await make_option(clean, stock=5)
    user_id, _ = await make_user(clean)
    order = await buy(clean, user_id, (option, 1))
    with pytest.raises(RuntimeError):
        async with clean.orders.locked(order.id) as locked:
            locked.cancel(clean.clock.now())
            raise RuntimeError("crash before commit")
    assert (await clean.orders.get(order.id)) == order


async def test_payment_and_expiry_at_the_deadline_never_both_win(clean: Container) -> None:
    """Each pair races on one order: either it is paid (and stays sold) or it expired (and
    the payment is refused, the units released) — never paid and released."""
    option = await make_option(clean, stock=20, price=100)
    user_id, _ = await make_user(clean)
    orders = [await buy(clean, user_id, (option, 1)) for _ in range(20)]
    deadline = orders[-1].pay_by
    before, after = FakeClock(deadline - timedelta(minutes=1)), FakeClock(deadline)

    async def pay(order: Order) -> str:
        # The gateway's success through the payment use cases; an order that expired first
        # is left expired (and the money refunded), which this race counts as refused.
        try:
            status = await pay_in_domain(clean, order.id, user_id, clock=before)
        except InvalidState:  # expired before the payment could start
            return "refused"
        return "paid" if status == "paid" else "refused"

    async def expire(order: Order) -> bool:
        return await services.expire_order(
            order.id, orders=clean.orders, stock=clean.stock, clock=after
        )

    outcomes = await asyncio.gather(*(asyncio.gather(pay(o), expire(o)) for o in orders))
    for order, (paid, expired) in zip(orders, outcomes, strict=True):
        final = await clean.orders.get(order.id)
        assert final is not None
        assert (paid, expired) in {("paid", False), ("refused", True)}
        assert final.status is (OrderStatus.PAID if paid == "paid" else OrderStatus.EXPIRED)
    paid_count = sum(1 for paid, _ in outcomes if paid == "paid")
    assert (await clean.stock.available([option]))[option] == 20 - paid_count


async def test_cancel_and_ship_racing_on_a_paid_order_never_both_win(clean: Container) -> None:
    option = await make_option(clean, stock=20, price=100)
    user_id, _ = await make_user(clean)
    orders = [await buy(clean, user_id, (option, 1)) for _ in range(20)]
    for order in orders:
        await pay_in_domain(clean, order.id, user_id)

    async def attempt(transition: Awaitable[object]) -> bool:
        try:
            await transition
        except InvalidState:
            return False
        return True

    outcomes = await asyncio.gather(
        *(
            asyncio.gather(
                attempt(
                    services.cancel_order(
                        o.id,
                        user_id=user_id,
                        orders=clean.orders,
                        stock=clean.stock,
                        clock=clean.clock,
                    )
                ),
                attempt(services.ship_order(o.id, orders=clean.orders, clock=clean.clock)),
            )
            for o in orders
        )
    )
    assert all(cancelled != shipped for cancelled, shipped in outcomes)
    cancelled_count = sum(1 for cancelled, _ in outcomes if cancelled)
    assert (await clean.stock.available([option]))[option] == cancelled_count


async def test_the_sweep_finishes_a_release_interrupted_after_the_status_commit(
    clean: Container,
) -> None:
    option = await make_option(clean, stock=5)
    user_id, _ = await make_user(clean)
    order = await buy(clean, user_id, (option, 3))
    async with clean.orders.locked(order.id) as locked:  # the process died right after this
        locked.cancel(clean.clock.now())
    assert (await clean.stock.available([option]))[option] == 2
    assert [o.id for o in await clean.orders.awaiting_release(limit=10)] == [order.id]

    released = await services.release_stock_of_closed_orders(
        orders=clean.orders, stock=clean.stock, clock=clean.clock
    )
    assert released == 1
    assert (await clean.stock.available([option]))[option] == 5
    assert await clean.orders.awaiting_release(limit=10) == []
    again = await services.release_stock_of_closed_orders(
        orders=clean.orders, stock=clean.stock, clock=clean.clock
    )
    assert again == 0
    assert (await clean.stock.available([option]))[option] == 5


async def test_the_overdue_query_finds_only_unpaid_orders_past_their_deadline(
    clean: Container,
) -> None:
    option = await make_option(clean, stock=5, price=100)
    user_id, _ = await make_user(clean)
    due = await buy(clean, user_id, (option, 1))
    paid = await buy(clean, user_id, (option, 1))
    await pay_in_domain(clean, paid.id, user_id)
    at_deadline = due.pay_by
    assert await clean.orders.overdue(at_deadline - timedelta(seconds=1), limit=10) == []
    assert await clean.orders.overdue(at_deadline + timedelta(days=1), limit=10) == [due.id]


async def test_a_purchase_retried_after_its_reservation_was_swept_reserves_afresh(
    clean: Container,
) -> None:
    option = await make_option(clean, stock=5)
    user_id, _ = await make_user(clean)
    key = f"order:{user_id}:retry"
    await clean.stock.reserve([Line(option, 2)], key=key)  # the first attempt died here…
    await clean.stock.release(key)  # …and the stock sweep released its reservation
    placed = await buy(clean, user_id, (option, 2), key="retry")
    assert placed.status is OrderStatus.PENDING_PAYMENT
    assert (await clean.stock.available([option]))[option] == 3
    assert await stock_and_ledger(clean, option) == (3, 3)


async def test_an_order_written_after_its_reservation_was_swept_is_voided(
    clean: Container,
) -> None:
    """The slow-write race: the sweep released the units before the order landed. Confirming
    must fail, and the order must not stay live holding units nobody set aside."""
    option = await make_option(clean, stock=5)
    user_id, _ = await make_user(clean)
    original_reserve = clean.stock.reserve

    async def reserve_then_lose(*args: Any, **kwargs: Any) -> Any:
        reservation = await original_reserve(*args, **kwargs)
        await clean.stock.release(reservation.key)  # the sweep, between reserve and write
        return reservation

    slow = dataclasses.replace(clean, stock=_Reserving(clean.stock, reserve_then_lose))
    with pytest.raises(ReservationLost):
        await buy(slow, user_id, (option, 2), key="late")
    voided = await clean.orders.find(user_id, "late")
    assert voided is not None
    assert voided.status.releases_stock
    assert (await clean.stock.available([option]))[option] == 5
    assert await stock_and_ledger(clean, option) == (5, 5)


class _Reserving:
    """The container's stock port with ``reserve`` replaced (the rest delegates)."""

    def __init__(self, inner: Any, reserve: Any) -> None:
        self._inner = inner
        self.reserve = reserve

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

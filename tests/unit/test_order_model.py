"""The order state machine (DESIGN §5), rule by rule, without I/O."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest

from shop.domain.errors import Conflict, InvalidInput, InvalidState
from shop.domain.limits import MAX_ORDER_TOTAL, MAX_PRICE
from shop.domain.orders.model import (
    OptionPrice,
    Order,
    OrderRules,
    OrderStatus,
    PaymentMethod,
    PlaceOrder,
    check_total,
)
from shop.domain.stock.model import Line
from tests.unit.fakes import T0

RULES = OrderRules(
    card_payment_ttl=timedelta(minutes=15),
    bank_transfer_ttl=timedelta(days=3),
    refund_window=timedelta(days=3),
    max_line_quantity=5,
    max_order_lines=3,
)
PRICES = {1: OptionPrice(1, 10, 700), 2: OptionPrice(2, 20, 1_500)}


def command(
    *lines: tuple[int, int],
    method: PaymentMethod = PaymentMethod.CARD,
    address: str = "1 Main St",
    key: str = "key-1",
) -> PlaceOrder:
    return PlaceOrder(
        user_id=uuid.UUID(int=1),
        idempotency_key=key,
        lines=tuple(Line(o, q) for o, q in (lines or ((1, 1),))),
        payment_method=method,
        shipping_address=address,
    )


def placed(*lines: tuple[int, int], method: PaymentMethod = PaymentMethod.CARD) -> Order:
    cmd = command(*lines, method=method)
    return Order.place(
        cmd, cmd.validated(RULES), PRICES, order_id=uuid.uuid4(), now=T0, rules=RULES
    )


def in_state(status: OrderStatus) -> Order:
    """An order walked to ``status`` through the real transitions."""
    order = placed()
    paths: dict[OrderStatus, list[Callable[[Order], object]]] = {
        OrderStatus.PENDING_PAYMENT: [],
        OrderStatus.PAID: [lambda o: o.pay(o.total, T0)],
        OrderStatus.SHIPPING: [lambda o: o.pay(o.total, T0), lambda o: o.ship(T0)],
        OrderStatus.DELIVERED: [
            lambda o: o.pay(o.total, T0),
            lambda o: o.ship(T0),
            lambda o: o.deliver(T0),
        ],
        OrderStatus.REFUNDED: [
            lambda o: o.pay(o.total, T0),
            lambda o: o.ship(T0),
            lambda o: o.deliver(T0),
            lambda o: o.refund(T0, RULES.refund_window),
        ],
        OrderStatus.CANCELLED: [lambda o: o.cancel(T0)],
        OrderStatus.EXPIRED: [lambda o: o.expire(T0 + timedelta(hours=1))],
    }
    for step in paths[status]:
        step(order)
    assert order.status is status
    return order


def test_a_new_order_awaits_payment_until_the_deadline_of_its_payment_method() -> None:
    card = placed(method=PaymentMethod.CARD)
    bank = placed(method=PaymentMethod.BANK_TRANSFER)
    assert card.status is OrderStatus.PENDING_PAYMENT
    assert card.pay_by == T0 + timedelta(minutes=15)
    assert bank.pay_by == T0 + timedelta(days=3)


def test_prices_are_captured_from_the_catalog_and_the_total_adds_them_up() -> None:
    order = placed((1, 2), (2, 1), (1, 1))
    assert [(ln.option_id, ln.product_id, ln.quantity, ln.unit_price) for ln in order.lines] == [
        (1, 10, 3, 700),
        (2, 20, 1, 1_500),
    ]
    assert order.total == 3 * 700 + 1_500


@pytest.mark.parametrize(
    ("cmd", "message"),
    [
        (command((1, 1), (2, 1), (3, 1), (4, 1)), "at most 3 lines"),
        (command((1, 6)), "at most 5 units"),
        (command((1, 3), (1, 3)), "at most 5 units"),
        (command(address="   "), "shipping address"),
        (command(key=" "), "Idempotency-Key"),
    ],
    ids=["too-many-lines", "quantity-over-cap", "merged-over-cap", "blank-address", "blank-key"],
)
def test_an_order_out_of_bounds_is_refused(cmd: PlaceOrder, message: str) -> None:
    # Lines within the cap that add up past it clash with the limit (409, a Conflict); the
    # rest are invalid values (422).
    with pytest.raises((InvalidInput, Conflict), match=message):
        cmd.validated(RULES)


def test_a_request_is_recognised_whatever_the_order_of_its_lines() -> None:
    assert command((1, 1), (2, 2)).fingerprint() == command((2, 2), (1, 1)).fingerprint()
    assert command((1, 1)).fingerprint() != command((1, 2)).fingerprint()
    assert command(address="a").fingerprint() != command(address="b").fingerprint()
    assert (
        command(method=PaymentMethod.CARD).fingerprint()
        != command(method=PaymentMethod.BANK_TRANSFER).fingerprint()
    )


def test_the_reservation_key_is_per_customer_and_idempotency_key() -> None:
    assert command(key="abc").reservation_key == f"order:{uuid.UUID(int=1)}:abc"


def test_payment_must_be_the_total() -> None:
    order = placed((1, 2))
    with pytest.raises(InvalidInput, match="total"):
        order.pay(order.total - 1, T0)
    assert order.status is OrderStatus.PENDING_PAYMENT


def test_a_duplicate_payment_is_answered_and_counted_once() -> None:
    order = placed()
    assert order.pay(order.total, T0) is True
    paid_at = order.paid_at
    assert order.pay(order.total, T0 + timedelta(minutes=1)) is False
    assert order.paid_at == paid_at


def test_a_payment_after_the_deadline_is_refused() -> None:
    order = placed()
    with pytest.raises(InvalidState):
        order.pay(order.total, order.pay_by)


@pytest.mark.parametrize("status", [OrderStatus.EXPIRED, OrderStatus.CANCELLED])
def test_closed_orders_cannot_be_paid(status: OrderStatus) -> None:
    order = in_state(status)
    with pytest.raises(InvalidState) as refused:
        order.pay(order.total, T0)
    assert refused.value.extra["state"] == status.value


@pytest.mark.parametrize("status", [OrderStatus.PENDING_PAYMENT, OrderStatus.PAID])
def test_cancel_is_allowed_before_shipping(status: OrderStatus) -> None:
    order = in_state(status)
    assert order.cancel(T0) is True
    assert order.status is OrderStatus.CANCELLED
    assert order.status.releases_stock


@pytest.mark.parametrize(
    "status", [OrderStatus.SHIPPING, OrderStatus.DELIVERED, OrderStatus.REFUNDED]
)
def test_cancel_is_refused_once_shipped(status: OrderStatus) -> None:
    order = in_state(status)
    with pytest.raises(InvalidState) as refused:
        order.cancel(T0)
    assert refused.value.extra == {"state": status.value}


def test_only_an_unpaid_order_expires() -> None:
    paid = in_state(OrderStatus.PAID)
    with pytest.raises(InvalidState):
        paid.expire(T0 + timedelta(days=30))
    assert paid.status is OrderStatus.PAID
    assert not paid.is_overdue(T0 + timedelta(days=30))


def test_an_order_does_not_expire_before_its_deadline() -> None:
    order = placed()
    with pytest.raises(InvalidState):
        order.expire(order.pay_by - timedelta(seconds=1))
    assert order.expire(order.pay_by) is True
    assert order.status is OrderStatus.EXPIRED
    assert order.awaits_stock_release


def test_shipping_needs_a_paid_order_and_delivery_a_shipped_one() -> None:
    with pytest.raises(InvalidState):
        placed().ship(T0)
    with pytest.raises(InvalidState):
        in_state(OrderStatus.PAID).deliver(T0)


def test_the_refund_window_is_counted_from_delivery_not_from_ordering() -> None:
    order = in_state(OrderStatus.SHIPPING)
    delivered = T0 + timedelta(days=10)
    order.deliver(delivered)
    assert order.refund(delivered + RULES.refund_window, RULES.refund_window) is True
    assert order.status is OrderStatus.REFUNDED
    assert not order.status.releases_stock


def test_a_refund_after_the_window_is_refused() -> None:
    order = in_state(OrderStatus.DELIVERED)
    with pytest.raises(InvalidState, match="window") as refused:
        order.refund(T0 + RULES.refund_window + timedelta(seconds=1), RULES.refund_window)
    assert refused.value.extra["state"] == "delivered"


@pytest.mark.parametrize(
    "status",
    [OrderStatus.PENDING_PAYMENT, OrderStatus.PAID, OrderStatus.SHIPPING, OrderStatus.CANCELLED],
)
def test_only_a_delivered_order_is_refunded(status: OrderStatus) -> None:
    with pytest.raises(InvalidState):
        in_state(status).refund(T0, RULES.refund_window)


@pytest.mark.parametrize(
    ("status", "repeat"),
    [
        (OrderStatus.PAID, lambda o: o.pay(o.total, T0)),
        (OrderStatus.SHIPPING, lambda o: o.ship(T0)),
        (OrderStatus.DELIVERED, lambda o: o.deliver(T0)),
        (OrderStatus.REFUNDED, lambda o: o.refund(T0, RULES.refund_window)),
        (OrderStatus.CANCELLED, lambda o: o.cancel(T0)),
        (OrderStatus.EXPIRED, lambda o: o.expire(T0 + timedelta(hours=2))),
    ],
)
def test_a_repeated_transition_is_answered_without_change(
    status: OrderStatus, repeat: Callable[[Order], bool]
) -> None:
    order = in_state(status)
    before = (order.status, order.paid_at, order.shipped_at, order.delivered_at)
    assert repeat(order) is False
    assert (order.status, order.paid_at, order.shipped_at, order.delivered_at) == before


# Every (state, action) pair the diagram has no arrow for is refused with the current state.
ACTIONS: dict[str, Callable[[Order], object]] = {
    "pay": lambda o: o.pay(o.total, T0),
    "ship": lambda o: o.ship(T0),
    "deliver": lambda o: o.deliver(T0),
    "cancel": lambda o: o.cancel(T0),
    "refund": lambda o: o.refund(T0, RULES.refund_window),
    "expire": lambda o: o.expire(T0 + timedelta(hours=1)),
}
ALLOWED = {
    (OrderStatus.PENDING_PAYMENT, "pay"),
    (OrderStatus.PENDING_PAYMENT, "cancel"),
    (OrderStatus.PENDING_PAYMENT, "expire"),
    (OrderStatus.PAID, "ship"),
    (OrderStatus.PAID, "cancel"),
    (OrderStatus.SHIPPING, "deliver"),
    (OrderStatus.DELIVERED, "refund"),
}
REPEATS = {
    (OrderStatus.PAID, "pay"),
    (OrderStatus.SHIPPING, "pay"),
    (OrderStatus.DELIVERED, "pay"),
    (OrderStatus.REFUNDED, "pay"),
    (OrderStatus.SHIPPING, "ship"),
    (OrderStatus.DELIVERED, "deliver"),
    (OrderStatus.REFUNDED, "refund"),
    (OrderStatus.CANCELLED, "cancel"),
    (OrderStatus.EXPIRED, "expire"),
}


@pytest.mark.parametrize("status", list(OrderStatus))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_each_action_is_allowed_repeated_harmlessly_or_refused_as_the_table_says(
    status: OrderStatus, action: str
) -> None:
    order = in_state(status)
    if (status, action) in ALLOWED:
        assert ACTIONS[action](order) is True
    elif (status, action) in REPEATS:
        assert ACTIONS[action](order) is False
        assert order.status is status
    else:
        with pytest.raises(InvalidState) as refused:
            ACTIONS[action](order)
        assert refused.value.extra["state"] == status.value
        assert order.status is status


def test_an_order_total_above_the_money_cap_is_refused_and_one_at_it_passes() -> None:
    prices = {n: OptionPrice(option_id=n, product_id=n, price=MAX_PRICE) for n in range(1, 12)}
    at_cap = [Line(n, 100) for n in range(1, 11)]  # 10 x 100 x 10^12 = 10^15
    assert check_total(at_cap, prices) == MAX_ORDER_TOTAL
    with pytest.raises(InvalidInput, match="total"):
        check_total([*at_cap, Line(11, 1)], prices)

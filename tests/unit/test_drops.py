"""The drops module against in-memory ports: a drop's rules, its terms of purchase, the queue's
answers, and an order placed in a drop."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from shop.domain.drops import services as drops
from shop.domain.drops.errors import (
    AdmissionRequired,
    DropEnded,
    DropNotStarted,
    PaymentMethodNotAllowed,
)
from shop.domain.drops.model import Drop, DropChanges, DropRules, DropStatus, QueueSettings
from shop.domain.drops.purchase import terms_of_purchase
from shop.domain.drops.queue import Admission, QueueStatus, QueueTicket, RoomAnswer
from shop.domain.drops.services import DropSales
from shop.domain.errors import (
    Conflict,
    InvalidInput,
    OpenOrderLimitExceeded,
    PurchaseLimitExceeded,
)
from shop.domain.orders import services as orders
from shop.domain.orders.model import OrderRules, PaymentMethod, PlaceOrder
from shop.domain.stock.model import Line
from tests.unit.drops_fakes import FakeAdmissions, FakeDrops, FakeRoom
from tests.unit.fakes import T0, FakeClock, FakeOrders, FakeStock

ALICE = uuid.UUID(int=1)
BOB = uuid.UUID(int=2)
START = T0 + timedelta(hours=1)


def rules(**changes: object) -> DropRules:
    base = DropRules(name="Sneakers", option_ids=(2, 1), starts_at=START)
    return replace(base, **changes)  # type: ignore[arg-type]


def announced(**changes: object) -> Drop:
    return Drop.announce(rules(**changes), drop_id=7, now=T0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"starts_at": T0 - timedelta(seconds=1)}, "starts_at"),
        ({"ends_at": START}, "ends_at"),
        ({"per_buyer_limit": 0}, "per_buyer_limit"),
        ({"max_open_orders_per_buyer": 0}, "max_open_orders_per_buyer"),
        ({"payment_methods": frozenset()}, "payment_methods"),
        ({"option_ids": (1, 1)}, "option_ids"),
        ({"option_ids": ()}, "option_ids"),
        ({"name": "  "}, "name"),
        ({"payment_window": timedelta(0)}, "payment_window_seconds"),
        ({"queue": QueueSettings(admit_per_second=0)}, "admit_per_second"),
    ],
)
def test_a_drop_with_a_broken_rule_is_refused_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        announced(**changes)
    assert caught.value.extra["field"] == field


def test_defaults_are_one_unit_one_open_order_card_only_ten_minutes_to_pay() -> None:
    drop = announced()
    assert drop.rules.option_ids == (1, 2)
    assert (drop.rules.per_buyer_limit, drop.rules.max_open_orders_per_buyer) == (1, 1)
    assert drop.rules.payment_methods == {PaymentMethod.CARD}
    assert drop.rules.payment_window == timedelta(minutes=10)


def test_status_follows_the_clock_and_the_stock() -> None:
    drop = announced(ends_at=START + timedelta(hours=1))
    assert drop.status(T0) is DropStatus.SCHEDULED
    assert drop.status(START, units_left=3) is DropStatus.LIVE
    assert drop.status(START, units_left=0) is DropStatus.SOLD_OUT
    assert drop.status(START + timedelta(hours=1)) is DropStatus.ENDED


def test_rules_change_freely_before_the_start_and_only_the_end_and_rate_after() -> None:
    drop = announced()
    assert drop.changed(DropChanges(per_buyer_limit=2), T0).rules.per_buyer_limit == 2
    live = START + timedelta(seconds=1)
    with pytest.raises(Conflict) as caught:
        drop.changed(DropChanges(per_buyer_limit=2), live)
    assert caught.value.extra["field"] == "per_buyer_limit"
    later = drop.changed(DropChanges(ends_at=START + timedelta(hours=2), admit_per_second=99), live)
    assert later.rules.queue.admit_per_second == 99
    with pytest.raises(InvalidInput):
        drop.changed(DropChanges(ends_at=START), live)  # an end in the past
    ended = later.changed(DropChanges(ends_at=None), live)
    assert ended.rules.ends_at is None


def _terms(drop: Drop, **kw: object) -> object:
    args: dict[str, object] = {
        "user_id": ALICE,
        "option_ids": [1],
        "payment_method": PaymentMethod.CARD,
        "admission": None,
        "token_sent": False,
        "shop_limit": None,
        "now": START,
    } | kw
    return terms_of_purchase(drop, **args)  # type: ignore[arg-type]


def test_terms_refuse_before_the_start_after_the_end_and_other_payment_methods() -> None:
    drop = announced(ends_at=START + timedelta(hours=1))
    with pytest.raises(DropNotStarted) as early:
        _terms(drop, now=T0)
    assert early.value.extra["starts_at"] == START.isoformat()
    with pytest.raises(DropEnded):
        _terms(drop, now=START + timedelta(hours=1))
    with pytest.raises(PaymentMethodNotAllowed) as method:
        _terms(drop, payment_method=PaymentMethod.BANK_TRANSFER)
    assert method.value.extra["allowed"] == ["card"]


def test_the_stricter_of_the_drop_and_shop_limits_applies() -> None:
    drop = announced(per_buyer_limit=3)
    assert _terms(drop, option_ids=[1, 2], shop_limit=2).limits == {1: 2, 2: 2}  # type: ignore[attr-defined]
    assert _terms(drop, shop_limit=None).limits == {1: 3}  # type: ignore[attr-defined]


def test_a_queued_drop_needs_this_buyers_unexpired_admission() -> None:
    drop = announced(queue=QueueSettings(enabled=True))
    ok = Admission(ALICE, 7, START + timedelta(minutes=2))
    with pytest.raises(AdmissionRequired) as missing:
        _terms(drop)
    assert missing.value.extra["queue"]["join"] == "/api/drops/7/queue"
    for admission in (
        replace(ok, user_id=BOB),
        replace(ok, drop_id=8),
        replace(ok, expires_at=START),
    ):
        with pytest.raises(AdmissionRequired):
            _terms(drop, admission=admission, token_sent=True)
    assert _terms(drop, admission=ok, token_sent=True).drop_id == 7  # type: ignore[attr-defined]


def test_a_ticket_says_how_far_and_how_long() -> None:
    waiting = RoomAnswer(QueueStatus.WAITING, position=41, starts_at=START, admit_per_second=10)
    ticket = QueueTicket.of(waiting, now=START)
    assert (ticket.position, ticket.ahead, ticket.eta_seconds) == (41, 40, 4)
    before = QueueTicket.of(replace(waiting, position=None), now=START - timedelta(seconds=30))
    assert (before.position, before.eta_seconds) == (None, 30)
    admitted = QueueTicket.of(RoomAnswer(QueueStatus.ADMITTED), now=START, token="t")
    assert admitted.admission_token == "t"
    assert (
        QueueTicket.of(RoomAnswer(QueueStatus.SOLD_OUT), now=START, token="t").admission_token
        is None
    )


class DropShop:
    def __init__(self, **drop_rules: object) -> None:
        self.stock = FakeStock({1: 5, 2: 5, 3: 5})
        self.orders = FakeOrders({1: 700, 2: 700, 3: 700})
        self.clock = FakeClock()
        self.drops = FakeDrops()
        self.room = FakeRoom()
        self.sales = DropSales(drops=self.drops, admissions=FakeAdmissions(), room=self.room)
        self.drop_rules = rules(**drop_rules)

    async def open(self) -> Drop:
        drop = await drops.create_drop(
            self.drop_rules, drops=self.drops, room=self.room, stock=self.stock, clock=self.clock
        )
        for option in drop.rules.option_ids:
            self.orders.drop_of_option[option] = drop.id
        self.clock.current = START
        return drop

    async def place(self, *lines: tuple[int, int], key: str = "k", user: uuid.UUID = ALICE):  # type: ignore[no-untyped-def]
        return await orders.place_order(
            PlaceOrder(
                user_id=user,
                idempotency_key=key,
                lines=tuple(Line(o, q) for o, q in lines),
                payment_method=PaymentMethod.CARD,
                shipping_address="1 Main St",
            ),
            rules=OrderRules(),
            stock=self.stock,
            orders=self.orders,
            clock=self.clock,
            sales=self.sales,
        )


async def test_an_order_in_a_drop_follows_its_terms() -> None:
    shop = DropShop(payment_window=timedelta(minutes=5))
    drop = await shop.open()
    assert shop.room.left == {drop.id: 10}  # the room learns the stock when the drop is made
    placed = await shop.place((1, 1))
    assert placed.order.drop_id == drop.id
    assert placed.order.pay_by == START + timedelta(minutes=5)
    with pytest.raises(InvalidInput):
        await shop.place((1, 1), (3, 1), key="mixed")
    with pytest.raises(PurchaseLimitExceeded):
        await shop.place((1, 2), key="two", user=BOB)
    with pytest.raises(OpenOrderLimitExceeded) as capped:
        await shop.place((2, 1), key="second")
    assert capped.value.extra["rule"] == "max_open_orders_per_buyer"
    assert shop.stock.units[2] == 5  # the refused order's reservation was given back
    assert shop.room.used_by == [(drop.id, ALICE)]
    outside = await shop.place((3, 4), key="outside")
    assert outside.order.drop_id is None
    assert outside.order.pay_by == START + timedelta(minutes=15)


async def test_the_worker_republishes_a_lost_room_and_reports_it() -> None:
    shop = DropShop()
    drop = await shop.open()
    shop.room.published.clear()
    lost = await drops.refresh_waiting_rooms(
        drops=shop.drops, room=shop.room, stock=shop.stock, clock=shop.clock
    )
    assert lost == [drop.id]
    assert drop.id in shop.room.published

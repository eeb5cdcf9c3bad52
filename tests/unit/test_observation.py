"""Observation rules: how purchases are classified, and what the dashboard derives."""

from __future__ import annotations

import uuid

import pytest

from shop.domain.errors import (
    InvalidInput,
    OptionWithdrawn,
    PurchaseLimitExceeded,
    ReservationLost,
    SoldOut,
    Unavailable,
)
from shop.domain.observation.model import (
    DropFigures,
    OptionFigures,
    PurchaseOutcome,
    SaleSnapshot,
)
from shop.domain.observation.ports import SaleObserver, SaleSnapshots
from shop.domain.observation.services import sale_dashboard
from shop.domain.orders import services
from shop.domain.orders.model import PaymentMethod, PlaceOrder
from shop.domain.stock.model import Line, OptionStock
from tests.unit.fakes import (
    FakeClock,
    FakeOrders,
    FakeSnapshots,
    FakeStock,
    RecordingObserver,
)
from tests.unit.test_order_services import RULES


def test_the_fakes_satisfy_the_ports() -> None:
    observer: SaleObserver = RecordingObserver()
    snapshots: SaleSnapshots = FakeSnapshots()
    assert observer and snapshots


def test_failures_are_classified_so_that_client_mistakes_are_not_errors() -> None:
    assert PurchaseOutcome.of_failure(SoldOut(1)) is PurchaseOutcome.SOLD_OUT
    assert PurchaseOutcome.of_failure(OptionWithdrawn(1)) is PurchaseOutcome.SOLD_OUT
    assert PurchaseOutcome.of_failure(PurchaseLimitExceeded(1, 2)) is PurchaseOutcome.LIMIT
    assert PurchaseOutcome.of_failure(Unavailable("down")) is PurchaseOutcome.UNAVAILABLE
    assert PurchaseOutcome.of_failure(InvalidInput("bad")) is PurchaseOutcome.INVALID
    assert PurchaseOutcome.of_failure(ReservationLost("k")) is PurchaseOutcome.ERROR
    assert PurchaseOutcome.of_failure(RuntimeError("boom")) is PurchaseOutcome.ERROR


async def _buy(
    observer: RecordingObserver, stock: FakeStock, user: int, key: str, *, orders: FakeOrders
) -> None:
    await services.place_order(
        PlaceOrder(
            user_id=uuid.UUID(int=user),
            idempotency_key=key,
            lines=(Line(1, 1),),
            payment_method=PaymentMethod.CARD,
            shipping_address="1 Main St",
        ),
        rules=RULES,
        stock=stock,
        orders=orders,
        clock=FakeClock(),
        observer=observer,
    )


async def test_every_purchase_tells_the_observer_how_it_ended() -> None:
    observer = RecordingObserver()
    stock, orders = FakeStock({1: 1}), FakeOrders({1: 700})
    await _buy(observer, stock, 1, "a", orders=orders)
    await _buy(observer, stock, 1, "a", orders=orders)
    with pytest.raises(SoldOut):
        await _buy(observer, stock, 2, "b", orders=orders)
    assert observer.purchases == [
        PurchaseOutcome.CREATED,
        PurchaseOutcome.REPLAYED,
        PurchaseOutcome.SOLD_OUT,
    ]


def _figures(option_id: int, sold: int, *, total: int = 10) -> OptionFigures:
    return OptionFigures(option_id, total, sold, 0, total - sold, 0, 0)


def test_oversold_and_drift_come_from_the_ledger() -> None:
    figures = OptionFigures.of(
        OptionStock(
            option_id=1,
            stock_total=3,
            sold=4,
            held=0,
            db_stock=0,
            authoritative=1,
            figures={"redis counter": 1},
        )
    )
    assert figures.oversold == 1
    assert figures.left == -1
    assert figures.drift == 2


def test_the_dashboard_rates_are_sales_between_snapshots() -> None:
    older = SaleSnapshot(100.0, "counter", (_figures(1, 2), _figures(2, 0)), lines_written=10)
    newer = SaleSnapshot(102.0, "counter", (_figures(1, 6), _figures(3, 9)), lines_written=16)
    board = sale_dashboard([newer, older], now=102.5, stale_after=5)
    assert board.fresh
    assert board.strategy == "counter"
    assert board.sold_per_second == 2.0  # option 3 entering the set is not a burst
    assert board.purchases_per_second == 3.0
    assert board.purchases_per_second_history == (3.0,)
    trend = {t.figures.option_id: t for t in board.options}
    assert trend[1].left_history == (8, 4)
    assert trend[1].sold_per_second == 2.0


def test_a_silent_worker_makes_the_dashboard_stale_not_empty() -> None:
    snapshot = SaleSnapshot(100.0, "db", (_figures(1, 2),))
    board = sale_dashboard([snapshot], now=200.0, stale_after=5)
    assert not board.fresh
    assert board.options[0].figures.sold == 2
    assert sale_dashboard([], now=0.0, stale_after=5).taken_at is None


def test_a_drop_panel_adds_up_its_own_options_and_measures_admissions() -> None:
    def drop(queue: int, admitted: int) -> DropFigures:
        return DropFigures(4, "night", 150.0, None, (1, 2), queue, admitted, 10.0, "live")

    older = SaleSnapshot(100.0, "counter", (_figures(1, 2),), drops=(drop(30, 4),))
    newer = SaleSnapshot(
        102.0,
        "counter",
        (_figures(1, 6), _figures(2, 1, total=5), _figures(3, 9)),
        drops=(drop(20, 14),),
    )
    (panel,) = sale_dashboard([newer, older], now=102.5, stale_after=5).drops
    assert (panel.on_sale, panel.sold, panel.left) == (15, 7, 8)  # option 3 is not the drop's
    assert panel.queue_history == (30, 20)
    assert panel.admitted_per_second == 5.0  # 10 admissions in 2 s; the setting says 10/s
    assert panel.figures.admission_rate == 10.0

"""The sweep and reconcile rules, on in-memory ports (the adapters have their own suite)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from shop.domain.errors import InvalidInput
from shop.domain.stock.model import (
    HeldReservation,
    Line,
    OptionStock,
    merge_lines,
)
from shop.domain.stock.services import reconcile_stock, sweep_reservations
from tests.unit.fakes import FakeClock, FakeOrderStates, FakeStock, FakeStockOperations

NOW = 1_000_000.0


def _stock(
    held: Sequence[HeldReservation], drift: Sequence[OptionStock] = ()
) -> FakeStockOperations:
    """The shared fakes: the port and its operations, one log of what the rules called."""
    return FakeStockOperations(FakeStock(), held, drift)


def _held(key: str, status: str, age: float) -> HeldReservation:
    return HeldReservation(
        key=key, lines=(Line(1, 1),), status=status, buyer=None, created_at=NOW - age
    )


def _clock() -> FakeClock:
    """The rules' now: ``NOW``, the instant the held reservations' ages count from."""
    return FakeClock(datetime.fromtimestamp(NOW, UTC))


async def _reconcile(
    stock: FakeStockOperations, orders: FakeOrderStates, *, fix: bool
) -> Sequence[OptionStock]:
    return await reconcile_stock(
        stock=stock.stock,
        operations=stock,
        orders=orders,
        pending_timeout=60,
        clock=_clock(),
        fix=fix,
    )


async def _sweep(stock: FakeStockOperations, orders: Mapping[str, str]) -> list[tuple[str, str]]:
    await sweep_reservations(
        stock=stock.stock,
        operations=stock,
        orders=FakeOrderStates(orders),
        pending_timeout=60,
        clock=_clock(),
    )
    return sorted(stock.calls)


async def test_an_old_reservation_without_an_order_goes_back_on_sale() -> None:
    stock = _stock([_held("k", "pending", age=61)])
    assert await _sweep(stock, {}) == [("release", "k")]


async def test_an_old_reservation_whose_order_was_written_is_confirmed() -> None:
    stock = _stock([_held("k", "pending", age=61)])
    assert await _sweep(stock, {"k": "pending_payment"}) == [("confirm", "k")]


async def test_a_young_reservation_is_left_alone_its_order_may_be_committing() -> None:
    stock = _stock([_held("k", "pending", age=5)])
    assert await _sweep(stock, {}) == []


@pytest.mark.parametrize("status", ["pending", "confirmed"])
async def test_a_cancelled_or_expired_order_never_keeps_its_units(status: str) -> None:
    stock = _stock([_held("c", status, age=1), _held("e", status, age=1)])
    assert await _sweep(stock, {"c": "cancelled", "e": "expired"}) == [
        ("release", "c"),
        ("release", "e"),
    ]


@pytest.mark.parametrize("state", ["pending_payment", "paid"])
async def test_the_units_of_a_live_releasable_order_are_never_touched(state: str) -> None:
    stock = _stock([_held("k", "confirmed", age=10_000)])
    assert await _sweep(stock, {"k": state}) == []


@pytest.mark.parametrize("state", ["shipping", "delivered", "refunded"])
async def test_a_shipped_order_is_retired_and_keeps_its_units_sold(state: str) -> None:
    stock = _stock([_held("k", "confirmed", age=10_000)])
    assert await _sweep(stock, {"k": state}) == [("retire", "k")]


async def test_reconcile_reports_without_touching_anything_unless_told_to_fix() -> None:
    drift = OptionStock(option_id=1, stock_total=10, sold=3, held=0, db_stock=9, authoritative=9)
    stock = _stock([_held("k", "pending", age=61)], drift=[drift])
    orders = FakeOrderStates({})
    reported = await _reconcile(stock, orders, fix=False)
    assert reported == [drift]
    assert drift.drift == 2
    assert not stock.repaired and stock.calls == []

    await _reconcile(stock, orders, fix=True)
    assert stock.repaired
    assert stock.calls == [("release", "k")]


def test_lines_are_merged_per_option_in_id_order() -> None:
    assert merge_lines([Line(2, 1), Line(1, 2), Line(2, 3)]) == (Line(1, 2), Line(2, 4))
    with pytest.raises(InvalidInput):
        merge_lines([])
    with pytest.raises(InvalidInput):
        Line(1, 0)

"""The sweep and reconcile rules, on in-memory ports (the adapters have their own suite)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from shop.domain.errors import InvalidInput
from shop.domain.stock.model import (
    HeldReservation,
    Line,
    OptionStock,
    PerBuyerLimit,
    Reservation,
    StockRebuild,
    merge_lines,
)
from shop.domain.stock.services import reconcile_stock, sweep_reservations

NOW = 1_000_000.0


class MemoryStock:
    """Just enough of the stock port and its operations to watch what the rules call."""

    name = "memory"

    def __init__(self, held: Sequence[HeldReservation], drift: Sequence[OptionStock] = ()) -> None:
        self.held = {reservation.key: reservation for reservation in held}
        self.calls: list[tuple[str, str]] = []
        self.drifting = list(drift)
        self.repaired = False

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        self.calls.append(("reserve", key))
        return Reservation(key=key, lines=tuple(lines))

    async def confirm(self, key: str) -> None:
        self.calls.append(("confirm", key))

    async def release(self, key: str) -> None:
        self.calls.append(("release", key))
        self.held.pop(key, None)

    async def put_on_sale(self, option_id: int, units: int, *, key: str | None = None) -> None:
        self.calls.append(("put_on_sale", str(option_id)))

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        return {}

    async def active_strategy(self) -> str:
        return self.name

    async def use(self, name: str) -> str:
        return self.name

    async def status(self, option_ids: Sequence[int] | None = None) -> Sequence[OptionStock]:
        return [] if self.repaired else self.drifting

    async def repair(self) -> Sequence[OptionStock]:
        self.repaired = True
        return self.drifting

    async def last_rebuild(self) -> StockRebuild | None:
        return None

    async def sync(self) -> int:
        return 0

    async def open_reservations(self) -> Sequence[HeldReservation]:
        return list(self.held.values())

    async def retire(self, keys: Sequence[str]) -> None:
        self.calls.extend(("retire", key) for key in keys)


class MemoryOrders:
    def __init__(self, states: Mapping[str, str]) -> None:
        self.states = dict(states)
        self.void: set[str] = set()

    async def states_of(self, keys: Sequence[str]) -> Mapping[str, str]:
        return {key: self.states[key] for key in keys if key in self.states}

    async def abandon(self, key: str) -> bool:
        if key in self.states:
            return False
        self.void.add(key)
        return True


def _held(key: str, status: str, age: float) -> HeldReservation:
    return HeldReservation(
        key=key, lines=(Line(1, 1),), status=status, buyer=None, created_at=NOW - age
    )


async def _sweep(stock: MemoryStock, orders: Mapping[str, str]) -> list[tuple[str, str]]:
    await sweep_reservations(
        stock=stock, operations=stock, orders=MemoryOrders(orders), pending_timeout=60, now=NOW
    )
    return sorted(stock.calls)


async def test_an_old_reservation_without_an_order_goes_back_on_sale() -> None:
    stock = MemoryStock([_held("k", "pending", age=61)])
    assert await _sweep(stock, {}) == [("release", "k")]


async def test_an_old_reservation_whose_order_was_written_is_confirmed() -> None:
    stock = MemoryStock([_held("k", "pending", age=61)])
    assert await _sweep(stock, {"k": "pending_payment"}) == [("confirm", "k")]


async def test_a_young_reservation_is_left_alone_its_order_may_be_committing() -> None:
    stock = MemoryStock([_held("k", "pending", age=5)])
    assert await _sweep(stock, {}) == []


@pytest.mark.parametrize("status", ["pending", "confirmed"])
async def test_a_cancelled_or_expired_order_never_keeps_its_units(status: str) -> None:
    stock = MemoryStock([_held("c", status, age=1), _held("e", status, age=1)])
    assert await _sweep(stock, {"c": "cancelled", "e": "expired"}) == [
        ("release", "c"),
        ("release", "e"),
    ]


@pytest.mark.parametrize("state", ["pending_payment", "paid"])
async def test_the_units_of_a_live_releasable_order_are_never_touched(state: str) -> None:
    stock = MemoryStock([_held("k", "confirmed", age=10_000)])
    assert await _sweep(stock, {"k": state}) == []


@pytest.mark.parametrize("state", ["shipping", "delivered", "refunded"])
async def test_a_shipped_order_is_retired_and_keeps_its_units_sold(state: str) -> None:
    stock = MemoryStock([_held("k", "confirmed", age=10_000)])
    assert await _sweep(stock, {"k": state}) == [("retire", "k")]


async def test_reconcile_reports_without_touching_anything_unless_told_to_fix() -> None:
    drift = OptionStock(
        option_id=1, stock_total=10, sold=3, held=0, db_stock=9, counter=None, authoritative=9
    )
    stock = MemoryStock([_held("k", "pending", age=61)], drift=[drift])
    orders = MemoryOrders({})
    reported = await reconcile_stock(
        stock=stock, operations=stock, orders=orders, pending_timeout=60, fix=False
    )
    assert reported == [drift]
    assert drift.drift == 2
    assert not stock.repaired and stock.calls == []

    await reconcile_stock(
        stock=stock, operations=stock, orders=orders, pending_timeout=60, fix=True
    )
    assert stock.repaired
    assert stock.calls == [("release", "k")]


def test_lines_are_merged_per_option_in_id_order() -> None:
    assert merge_lines([Line(2, 1), Line(1, 2), Line(2, 3)]) == (Line(1, 2), Line(2, 4))
    with pytest.raises(InvalidInput):
        merge_lines([])
    with pytest.raises(InvalidInput):
        Line(1, 0)

"""The named lifecycle sets partition the states as the rules say, so a state added later
must be placed in them on purpose."""

from __future__ import annotations

import pytest

from shop.domain.orders.status import OrderStatus
from shop.domain.stock.model import ReservationStatus

S = OrderStatus
ALL = frozenset(OrderStatus)

# Every order state and exactly the sets it belongs to.
MEMBERSHIP = {
    S.PENDING_PAYMENT: {"LIVE", "CANCELLABLE", "RELEASABLE", "COUNTS_FOR_POPULARITY"},
    S.PAID: {"LIVE", "CANCELLABLE", "RELEASABLE", "PAID_FOR", "COUNTS_FOR_POPULARITY"},
    S.SHIPPING: {"LIVE", "PAID_FOR", "COUNTS_FOR_POPULARITY"},
    S.DELIVERED: {"LIVE", "PAID_FOR", "COUNTS_FOR_POPULARITY"},
    S.REFUND_PENDING: {"LIVE", "PAID_FOR", "COUNTS_FOR_POPULARITY"},
    S.REFUNDED: {"LIVE", "PAID_FOR", "COUNTS_FOR_POPULARITY"},
    S.CANCELLED: {"CLOSED"},
    S.EXPIRED: {"CLOSED"},
}
SETS = {
    name: getattr(OrderStatus, name)
    for name in ("LIVE", "CLOSED", "CANCELLABLE", "RELEASABLE", "PAID_FOR", "COUNTS_FOR_POPULARITY")
}


def test_every_state_is_placed() -> None:
    assert set(MEMBERSHIP) == ALL


@pytest.mark.parametrize("state", list(OrderStatus))
def test_each_state_is_in_exactly_its_sets(state: OrderStatus) -> None:
    assert {name for name, states in SETS.items() if state in states} == MEMBERSHIP[state]


def test_live_and_closed_partition_the_states() -> None:
    assert S.LIVE | S.CLOSED == ALL
    assert not S.LIVE & S.CLOSED


def test_only_closed_states_release_stock() -> None:
    assert {state for state in OrderStatus if state.releases_stock} == S.CLOSED


def test_the_subsets_of_live() -> None:
    assert S.CANCELLABLE <= S.RELEASABLE <= S.LIVE
    assert S.PAID_FOR <= S.LIVE
    assert S.COUNTS_FOR_POPULARITY == S.LIVE


def test_the_sets_match_plain_strings_read_from_a_store() -> None:
    assert "paid" in S.LIVE and "cancelled" in S.CLOSED
    assert S.values(S.CLOSED) == ["cancelled", "expired"]


def test_reservation_statuses_open_and_reusable_are_disjoint() -> None:
    open_, reusable = ReservationStatus.OPEN, ReservationStatus.REUSABLE
    assert open_ == {ReservationStatus.PENDING, ReservationStatus.CONFIRMED}
    assert reusable == {ReservationStatus.RELEASED, ReservationStatus.MOVED}
    assert not open_ & reusable
    assert ReservationStatus.SOLD not in open_ | reusable

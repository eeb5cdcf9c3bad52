"""The conservation arithmetic and the port's preconditions, without a store."""

from __future__ import annotations

import pytest

from shop.domain.errors import InvalidInput
from shop.domain.stock.ledger import balances, expected_left
from shop.domain.stock.preconditions import (
    MAX_UNITS_PER_CALL,
    check_limit_arguments,
    check_units,
    check_units_per_call,
)


def test_what_is_left_is_the_total_less_the_sold_and_the_held_units() -> None:
    assert expected_left(10, sold=3, held=2) == 5
    assert expected_left(10, sold=3) == 7
    assert balances(10, sold=3, held=2, left=5)
    assert not balances(10, sold=3, left=6)


def test_an_oversold_ledger_shows_a_negative_remainder() -> None:
    assert expected_left(2, sold=3) == -1


def test_a_per_buyer_limit_needs_a_buyer_and_at_least_one_unit() -> None:
    check_limit_arguments(None, None)
    check_limit_arguments("7", 1)
    with pytest.raises(InvalidInput):
        check_limit_arguments(None, 2)
    with pytest.raises(InvalidInput):
        check_limit_arguments("7", 0)


def test_put_on_sale_refuses_anything_but_a_positive_whole_number() -> None:
    check_units(1)
    for bad in (0, -1, 1.5, "3"):
        with pytest.raises(InvalidInput):
            check_units(bad)


def test_an_operator_restock_is_capped_per_call() -> None:
    check_units_per_call(MAX_UNITS_PER_CALL)
    with pytest.raises(InvalidInput):
        check_units_per_call(MAX_UNITS_PER_CALL + 1)
    with pytest.raises(InvalidInput):
        check_units_per_call(0)

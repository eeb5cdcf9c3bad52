"""The ``db`` strategy's per-buyer limit and its lost-reservation check, on real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from shop.adapters.db.stock import PostgresStock
from shop.bootstrap import Container
from shop.domain.errors import PurchaseLimitExceeded, ReservationLost, SoldOut
from shop.domain.stock.model import Line
from tests.factories import make_option


@pytest.fixture
def stock(clean: Container) -> PostgresStock:
    return PostgresStock(clean.engine)


async def test_concurrent_requests_of_one_buyer_cannot_pass_the_limit(
    stock: PostgresStock, clean: Container
) -> None:
    option_id = await make_option(clean, stock=100)

    async def attempt(n: int) -> str:
        try:
            await stock.reserve([Line(option_id, 1)], key=f"k{n}", buyer="alice", per_buyer_limit=2)
        except PurchaseLimitExceeded:
            return "limited"
        return "ok"

    results = await asyncio.gather(*(attempt(n) for n in range(20)))
    assert results.count("ok") == 2
    assert (await stock.available([option_id]))[option_id] == 98


async def test_the_limit_counts_per_buyer_and_per_option_and_forgets_released_units(
    stock: PostgresStock, clean: Container
) -> None:
    a = await make_option(clean, stock=10)
    b = await make_option(clean, stock=10)
    await stock.reserve([Line(a, 1)], key="a1", buyer="alice", per_buyer_limit=1)
    await stock.reserve([Line(b, 1)], key="b1", buyer="alice", per_buyer_limit=1)
    await stock.reserve([Line(a, 1)], key="bob", buyer="bob", per_buyer_limit=1)
    with pytest.raises(PurchaseLimitExceeded) as refused:
        await stock.reserve([Line(a, 1)], key="a2", buyer="alice", per_buyer_limit=1)
    assert refused.value.option_id == a
    assert (await stock.available([a]))[a] == 8, "the refused request took nothing"
    await stock.release("a1")
    await stock.reserve([Line(a, 1)], key="a3", buyer="alice", per_buyer_limit=1)


async def test_one_request_above_the_limit_is_refused(
    stock: PostgresStock, clean: Container
) -> None:
    option_id = await make_option(clean, stock=10)
    with pytest.raises(PurchaseLimitExceeded):
        await stock.reserve(
            [Line(option_id, 1), Line(option_id, 1)], key="k", buyer="alice", per_buyer_limit=1
        )
    assert (await stock.available([option_id]))[option_id] == 10


async def test_sold_out_wins_over_the_limit_and_takes_nothing(
    stock: PostgresStock, clean: Container
) -> None:
    option_id = await make_option(clean, stock=1)
    with pytest.raises(SoldOut):
        await stock.reserve([Line(option_id, 2)], key="k", buyer="alice", per_buyer_limit=1)


async def test_confirming_a_released_or_unknown_reservation_is_refused(
    stock: PostgresStock, clean: Container
) -> None:
    option_id = await make_option(clean, stock=5)
    await stock.reserve([Line(option_id, 1)], key="kept")
    await stock.confirm("kept")
    await stock.confirm("kept")
    await stock.reserve([Line(option_id, 1)], key="swept")
    await stock.release("swept")
    with pytest.raises(ReservationLost):
        await stock.confirm("swept")
    with pytest.raises(ReservationLost):
        await stock.confirm("never-made")
    assert (await stock.available([option_id]))[option_id] == 4

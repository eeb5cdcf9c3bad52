"""The ``db`` strategy against the real PostgreSQL: all-or-nothing, idempotent, no oversell."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text

from shop.adapters.db.stock import PostgresStock
from shop.adapters.db.tables import OptionRow
from shop.bootstrap import Container
from shop.domain.errors import SoldOut
from shop.domain.stock.model import Line
from tests.factories import make_option


@pytest.fixture
def stock(clean: Container) -> PostgresStock:
    return PostgresStock(clean.engine)


async def _db_stock(container: Container, option_id: int) -> tuple[int, int]:
    async with container.engine.connect() as conn:
        row = (
            await conn.execute(
                select(OptionRow.stock, OptionRow.stock_total).where(OptionRow.id == option_id)
            )
        ).one()
    return int(row.stock), int(row.stock_total)


async def test_lines_of_one_option_are_added_up_before_the_check(
    stock: PostgresStock, clean: Container
) -> None:
    option_id = await make_option(clean, stock=5)
    with pytest.raises(SoldOut) as caught:
        await stock.reserve([Line(option_id, 3), Line(option_id, 3)], key="k1")
    assert caught.value.option_id == option_id
    assert (await stock.available([option_id]))[option_id] == 5


async def test_a_short_line_reserves_nothing(stock: PostgresStock, clean: Container) -> None:
    plenty = await make_option(clean, stock=10)
    scarce = await make_option(clean, stock=1)
    with pytest.raises(SoldOut):
        await stock.reserve([Line(plenty, 2), Line(scarce, 2)], key="k1")
    assert await stock.available([plenty, scarce]) == {plenty: 10, scarce: 1}


async def test_retry_with_the_same_key_reserves_once(
    stock: PostgresStock, clean: Container
) -> None:
    option_id = await make_option(clean, stock=5)
    first = await stock.reserve([Line(option_id, 2)], key="retry")
    second = await stock.reserve([Line(option_id, 2)], key="retry")
    assert first == second
    assert (await stock.available([option_id]))[option_id] == 3


async def test_release_twice_returns_units_once(stock: PostgresStock, clean: Container) -> None:
    option_id = await make_option(clean, stock=5)
    await stock.reserve([Line(option_id, 2)], key="r")
    await stock.confirm("r")
    await stock.release("r")
    await stock.release("r")
    assert (await stock.available([option_id]))[option_id] == 5


async def test_put_on_sale_raises_total_and_remaining(
    stock: PostgresStock, clean: Container
) -> None:
    option_id = await make_option(clean, stock=3)
    await stock.put_on_sale(option_id, 4)
    assert await _db_stock(clean, option_id) == (7, 7)


async def test_the_check_constraint_is_the_last_line_of_defence(clean: Container) -> None:
    option_id = await make_option(clean, stock=1)
    with pytest.raises(Exception, match="stock_non_negative"):
        async with clean.engine.begin() as conn:
            await conn.execute(text(f"UPDATE option SET stock = -1 WHERE id = {option_id}"))


async def test_race_exactly_the_stock_is_sold(stock: PostgresStock, clean: Container) -> None:
    option_id = await make_option(clean, stock=20)

    async def buyer(n: int) -> str:
        await stock.reserve([Line(option_id, 1)], key=f"buyer-{n}")
        return "ok"

    results = await asyncio.gather(*(buyer(n) for n in range(100)), return_exceptions=True)
    assert results.count("ok") == 20
    assert all(isinstance(r, SoldOut) for r in results if r != "ok")
    assert await _db_stock(clean, option_id) == (0, 20)

"""Restocks with an idempotency key, on every strategy: the units go on sale once.

The failure the key exists for is an error after the ledger committed (the admin sees an
error, or no answer, and retries). For the counter strategy the dangerous one is a crash
between its two steps, the PostgreSQL commit and the Redis INCRBY; the tests leave the
stores exactly as such a crash leaves them, then retry through the port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from sqlalchemy import insert, select, update

from shop.adapters.db.stock_fence import COUNTER_GENERATION_SETTING, read_setting
from shop.adapters.db.tables import OptionRow, StockRestockRow
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.config import Settings
from shop.domain.errors import InvalidInput
from shop.domain.stock.model import Line
from shop.domain.stock.ports import StockReservation
from tests.factories import make_option
from tests.stock_helpers import assert_conserved

STRATEGIES = sorted(STOCK_STRATEGIES)


@pytest.fixture(params=STRATEGIES)
async def stock(request: pytest.FixtureRequest, clean: Container) -> StockReservation:
    await clean.stock_operations.use(request.param)
    assert clean.stock.name == request.param
    return clean.stock


async def _total(container: Container, option_id: int) -> int:
    async with container.engine.connect() as conn:
        total = await conn.scalar(select(OptionRow.stock_total).where(OptionRow.id == option_id))
    return int(total or 0)


async def _left(stock: StockReservation, option_id: int) -> int:
    return (await stock.available([option_id]))[option_id]


async def commit_like_a_crashed_restock(
    container: Container, option_id: int, units: int, *, key: str
) -> None:
    """What a restock leaves when its process dies right after the PostgreSQL commit: the
    key with the generation it served under, ``stock_total`` and ``option.stock`` raised
    together (``add_to_total``), and for the counter strategy no Redis step."""
    async with container.engine.begin() as conn:
        generation = None
        if container.stock.name == "counter":
            generation = await read_setting(conn, COUNTER_GENERATION_SETTING)
        await conn.execute(
            insert(StockRestockRow).values(
                key=key, option_id=option_id, units=units, counter_generation=generation
            )
        )
        await conn.execute(
            update(OptionRow)
            .where(OptionRow.id == option_id)
            .values(stock_total=OptionRow.stock_total + units, stock=OptionRow.stock + units)
        )


async def test_a_restock_retried_with_its_key_puts_the_units_on_sale_once(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=3)
    await stock.put_on_sale(option_id, 4, key="restock-1")
    await stock.put_on_sale(option_id, 4, key="restock-1")
    assert await _left(stock, option_id) == 7
    assert await _total(clean, option_id) == 7
    await assert_conserved(clean, [option_id])


async def test_retries_racing_on_one_key_put_the_units_on_sale_once(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=1)
    await asyncio.gather(*(stock.put_on_sale(option_id, 5, key="burst") for _ in range(8)))
    assert await _left(stock, option_id) == 6
    assert await _total(clean, option_id) == 6
    await assert_conserved(clean, [option_id])


async def test_a_key_used_for_another_restock_is_refused(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=2)
    other = await make_option(clean, stock=2)
    await stock.put_on_sale(option_id, 4, key="restock-1")
    with pytest.raises(InvalidInput):
        await stock.put_on_sale(option_id, 5, key="restock-1")
    with pytest.raises(InvalidInput):
        await stock.put_on_sale(other, 4, key="restock-1")
    assert await stock.available([option_id, other]) == {option_id: 6, other: 2}
    await assert_conserved(clean, [option_id, other])


async def test_restocks_without_a_key_add_every_time(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=1)
    await stock.put_on_sale(option_id, 2)
    await stock.put_on_sale(option_id, 2)
    assert await _left(stock, option_id) == 5


async def test_a_retry_after_a_failure_past_the_commit_puts_the_units_on_sale_once(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=3)
    await stock.reserve([Line(option_id, 1)], key="a buyer")
    await commit_like_a_crashed_restock(clean, option_id, 4, key="restock-1")

    await stock.put_on_sale(option_id, 4, key="restock-1")
    assert await _left(stock, option_id) == 6
    await stock.put_on_sale(option_id, 4, key="restock-1")
    assert await _left(stock, option_id) == 6
    assert await _total(clean, option_id) == 7
    await stock.release("a buyer")
    await assert_conserved(clean, [option_id])


async def test_a_retry_after_a_switch_puts_nothing_more_on_sale(
    stock: StockReservation, clean: Container
) -> None:
    """The first attempt completed; its answer was lost and the strategy changed since."""
    option_id = await make_option(clean, stock=3)
    await stock.put_on_sale(option_id, 4, key="restock-1")
    for other in [*(s for s in STRATEGIES if s != stock.name), stock.name]:
        await clean.stock_operations.use(other)
        await clean.stock.put_on_sale(option_id, 4, key="restock-1")
        assert await _left(clean.stock, option_id) == 7, other
    await assert_conserved(clean, [option_id])


@pytest.fixture
async def no_grace(clean: Container, settings: Settings) -> AsyncIterator[Container]:
    """A process whose counter rebuild does not wait for in-flight orders (none here)."""
    built = Container.build(msgspec.structs.replace(settings, stock_recovery_grace=0.0))
    yield built
    await built.close()


async def test_a_retry_after_the_counters_were_rebuilt_adds_nothing_more(
    no_grace: Container,
) -> None:
    """The rebuild read the crashed restock's units from the ledger: the retry must not add
    them to the new counter a second time."""
    await no_grace.stock_operations.use("counter")
    option_id = await make_option(no_grace, stock=3)
    await commit_like_a_crashed_restock(no_grace, option_id, 4, key="restock-1")
    await no_grace.redis.flushdb()
    await no_grace.stock.reserve([Line(option_id, 1)], key="after the loss")  # rebuilds

    await no_grace.stock.put_on_sale(option_id, 4, key="restock-1")
    assert await _left(no_grace.stock, option_id) == 6
    await no_grace.stock.release("after the loss")
    await assert_conserved(no_grace, [option_id])

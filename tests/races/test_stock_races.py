"""Concurrency and faults against every stock strategy, on real PostgreSQL and Redis.

Pattern (STYLE.md): put K units on sale, start N ≫ K buyers at once, then check that exactly K
succeeded, every other buyer was told SoldOut, nothing is left, and conservation holds
against the orders written. Buyers follow place_order's contract (reserve → write the order
→ confirm), so the ledger sees real order lines.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import textwrap
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from shop.adapters.db.stock_ledger import SqlOrderStates, ledger
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.domain.errors import PurchaseLimitExceeded, SoldOut, Unavailable
from shop.domain.stock.model import Line
from shop.domain.stock.services import sweep_reservations
from tests.factories import make_option, make_user
from tests.races.conftest import BuildContainer
from tests.stock_helpers import (
    assert_conserved,
    buy,
    cancel,
    remaining,
    set_order_status,
    write_order,
)
from tests.strategies import TEST_ONLY
from tests.unit.fakes import clock_ahead

STRATEGIES = sorted(STOCK_STRATEGIES)
T = TypeVar("T")
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("strategy", STRATEGIES)]


async def _container(build_container: BuildContainer, strategy: str, **changes: Any) -> Container:
    container = await build_container(**changes)
    await container.stock_operations.use(strategy)
    return container


async def _patiently(attempt: Callable[[], Awaitable[T]]) -> T:
    """A client that retries a step on 503 (Unavailable), with the same idempotency key."""
    while True:
        try:
            return await attempt()
        except Unavailable:
            await asyncio.sleep(0.05)


async def _buy_patiently(shop: Container, option_id: int, *, key: str, user_id: uuid.UUID) -> str:
    """place_order as a retrying client drives it: each step retried on 503 by itself."""
    lines = [Line(option_id, 1)]
    await _patiently(lambda: shop.stock.reserve(lines, key=key, buyer=str(user_id)))
    await write_order(shop, key=key, lines=lines, user_id=user_id)
    await _patiently(lambda: shop.stock.confirm(key))
    return "ok"


async def test_exactly_the_stock_is_sold_to_500_concurrent_buyers(
    strategy: str, build_container: BuildContainer
) -> None:
    shop = await _container(build_container, strategy)
    option_id = await make_option(shop, stock=100)
    user_id, _ = await make_user(shop)

    results = await asyncio.gather(
        *(buy(shop, [Line(option_id, 1)], key=f"b{n}", user_id=user_id) for n in range(500)),
        return_exceptions=True,
    )

    assert results.count("ok") == 100
    assert all(isinstance(result, SoldOut) for result in results if result != "ok"), {
        type(result) for result in results
    }
    assert (await remaining(shop, [option_id]))[option_id] == 0
    await assert_conserved(shop, [option_id])


async def test_multi_line_orders_over_overlapping_options_neither_deadlock_nor_oversell(
    strategy: str, build_container: BuildContainer
) -> None:
    shop = await _container(build_container, strategy)
    options = [await make_option(shop, stock=60) for _ in range(3)]
    user_id, _ = await make_user(shop)
    rng = random.Random(5)
    baskets = [
        [Line(option_id, rng.randint(1, 2)) for option_id in rng.sample(options, rng.randint(2, 3))]
        for _ in range(300)
    ]

    results = await asyncio.gather(
        *(buy(shop, basket, key=f"m{n}", user_id=user_id) for n, basket in enumerate(baskets)),
        return_exceptions=True,
    )

    assert all(result == "ok" or isinstance(result, SoldOut) for result in results), {
        repr(result) for result in results if result != "ok"
    }
    bought = {option_id: 0 for option_id in options}
    for basket, result in zip(baskets, results, strict=True):
        if result == "ok":
            for line in basket:
                bought[line.option_id] += line.quantity
    entries = await ledger(shop.engine, options)
    assert {option_id: entries[option_id].sold for option_id in options} == bought
    assert all(units <= 60 for units in bought.values())
    assert results.count("ok") > 20
    await assert_conserved(shop, options)


async def test_a_retried_request_reserves_once_even_when_the_retries_race(
    strategy: str, build_container: BuildContainer
) -> None:
    shop = await _container(build_container, strategy)
    option_id = await make_option(shop, stock=10)

    reservations = await asyncio.gather(
        *(shop.stock.reserve([Line(option_id, 3)], key="same") for _ in range(20))
    )

    assert len(set(reservations)) == 1
    assert (await shop.stock.available([option_id]))[option_id] == 7


async def test_racing_releases_give_the_units_back_once(
    strategy: str, build_container: BuildContainer
) -> None:
    shop = await _container(build_container, strategy)
    option_id = await make_option(shop, stock=10)
    user_id, _ = await make_user(shop)
    await buy(shop, [Line(option_id, 4)], key="order", user_id=user_id)

    await asyncio.gather(*(cancel(shop, "order") for _ in range(20)))

    assert (await remaining(shop, [option_id]))[option_id] == 10
    await assert_conserved(shop, [option_id])


async def test_one_buyer_racing_against_a_limit_of_one_gets_exactly_one(
    strategy: str, build_container: BuildContainer
) -> None:
    shop = await _container(build_container, strategy)
    option_id = await make_option(shop, stock=10)
    user_id, _ = await make_user(shop)

    results = await asyncio.gather(
        *(
            buy(shop, [Line(option_id, 1)], key=f"l{n}", user_id=user_id, per_buyer_limit=1)
            for n in range(50)
        ),
        return_exceptions=True,
    )

    assert results.count("ok") == 1
    assert all(isinstance(r, PurchaseLimitExceeded) for r in results if r != "ok")
    assert (await remaining(shop, [option_id]))[option_id] == 9
    await assert_conserved(shop, [option_id])


async def test_the_sweep_returns_the_units_of_a_process_that_died_before_writing_its_order(
    strategy: str, build_container: BuildContainer
) -> None:
    if strategy in TEST_ONLY:
        pytest.skip(
            "the dying process is a fresh interpreter: it knows only bootstrap's strategies"
        )
    shop = await _container(build_container, strategy)
    option_id = await make_option(shop, stock=5)
    settings = shop.settings
    env = {
        **os.environ,
        "SHOP_ENVIRONMENT": "test",
        "SHOP_DATABASE_URL": str(settings.database_url),
        "SHOP_REDIS_URL": str(settings.redis_url),
        "SHOP_JWT_SECRET": str(settings.jwt_secret),
        "SHOP_DATA_DIR": settings.data_dir,
        "SHOP_LOG_LEVEL": "WARNING",
    }
    script = f"""
        import asyncio, os
        from shop.bootstrap import Container
        from shop.config import load_settings
        from shop.domain.stock.model import Line

        async def main():
            container = Container.build(load_settings(env_file=None))
            await container.stock.reserve([Line({option_id}, 2)], key="doomed")
            os._exit(17)  # dies between reserve and the order insert, closing nothing

        asyncio.run(main())
    """
    died = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(died.communicate(), timeout=60)
    assert died.returncode == 17, stderr.decode()
    assert (await shop.stock.available([option_id]))[option_id] == 3

    swept = await sweep_reservations(
        stock=shop.stock,
        operations=shop.stock_operations,
        orders=SqlOrderStates(shop.engine),
        pending_timeout=settings.reservation_timeout,
        clock=clock_ahead(settings.reservation_timeout + 1),
    )

    assert swept.released == ["doomed"]
    assert (await remaining(shop, [option_id]))[option_id] == 5
    await assert_conserved(shop, [option_id])


async def test_a_sale_survives_redis_being_flushed_mid_sale(
    strategy: str, build_container: BuildContainer
) -> None:
    # Two app processes: both notice the loss, only one may rebuild, nothing counts twice.
    shop = await _container(build_container, strategy)
    other = await build_container()
    option_id = await make_option(shop, stock=100)
    user_id, _ = await make_user(shop)
    sold = 0
    a_third_sold = asyncio.Event()

    async def buyer(n: int) -> str:
        nonlocal sold
        result = await _buy_patiently(
            shop if n % 2 else other, option_id, key=f"f{n}", user_id=user_id
        )
        sold += 1
        if sold == 30:
            a_third_sold.set()
        return result

    async def flush_when_a_third_is_sold() -> None:
        await a_third_sold.wait()
        await shop.redis.flushdb()

    flusher = asyncio.create_task(flush_when_a_third_is_sold())
    results = await asyncio.gather(*(buyer(n) for n in range(300)), return_exceptions=True)
    await flusher

    assert results.count("ok") == 100
    assert all(isinstance(result, SoldOut) for result in results if result != "ok"), {
        repr(result) for result in results if result != "ok"
    }
    assert (await remaining(shop, [option_id]))[option_id] == 0
    await assert_conserved(shop, [option_id])


async def test_a_sale_racing_switches_back_and_forth_sells_exactly_the_stock(
    strategy: str, build_container: BuildContainer
) -> None:
    # Two app processes sell; a third runs `shop stock use` over and over meanwhile.
    first = await _container(build_container, strategy)
    second = await build_container()
    operator = await build_container()
    option_id = await make_option(first, stock=150)
    user_id, _ = await make_user(first)
    cycle = [name for name in STRATEGIES if name != strategy] + [strategy]
    switches = 0
    selling = True

    async def switch_back_and_forth() -> None:
        nonlocal switches
        while selling:
            await asyncio.sleep(0.03)
            await operator.stock_operations.use(cycle[switches % len(cycle)])
            switches += 1

    async def buyer(shop: Container, n: int) -> str:
        key = f"s{n}"
        await _buy_patiently(shop, option_id, key=key, user_id=user_id)
        if n % 5 == 0:  # some customers cancel: units go back across switches, once
            await set_order_status(shop, key, "cancelled")
            await _patiently(lambda: shop.stock.release(key))
        return "ok"

    switcher = asyncio.create_task(switch_back_and_forth())
    results = await asyncio.gather(
        *(buyer(first if n % 2 else second, n) for n in range(400)), return_exceptions=True
    )
    selling = False
    await switcher

    assert switches >= 3
    assert all(result == "ok" or isinstance(result, SoldOut) for result in results), {
        repr(result) for result in results if result != "ok"
    }
    # Whatever the cancels gave back is sold too, then nothing is left: exactly the stock.
    mop_up = 0
    while True:
        try:
            await buy(first, [Line(option_id, 1)], key=f"mop{mop_up}", user_id=user_id)
        except SoldOut:
            break
        mop_up += 1
    entries = await ledger(first.engine, [option_id])
    assert entries[option_id].sold == 150
    assert (await remaining(first, [option_id]))[option_id] == 0
    await assert_conserved(first, [option_id])

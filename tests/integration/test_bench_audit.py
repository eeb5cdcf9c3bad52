"""The benchmark's audit (benchmarks/audit.py) on crafted states of the real stores.

It must not call a state drift while that state is still settling (a purchase between its
reserve and its order write, a counter the sync has not copied to PostgreSQL yet, orders
expiring under it), and it must call a real drift or oversell by its name, with the ledger
that shows it. No SAQ worker runs here: nothing syncs unless the audit does.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from benchmarks.audit import DRIFT, OK, OVERSOLD, UNSETTLED, audit
from sqlalchemy import text

from shop.adapters.redis.stock_keys import left_key
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.domain.stock.model import Line
from tests.factories import make_option, make_user
from tests.stock_helpers import buy, set_order_status, write_order

STRATEGIES = sorted(STOCK_STRATEGIES)


@pytest.fixture(params=STRATEGIES)
async def shop(request: pytest.FixtureRequest, clean: Container) -> Container:
    await clean.stock_operations.use(request.param)
    return clean


async def _sell(container: Container, option_id: int, count: int) -> list[str]:
    user_id, _ = await make_user(container)
    keys = [f"bench-{uuid.uuid4().hex}" for _ in range(count)]
    for key in keys:
        await buy(container, [Line(option_id, 1)], key=key, user_id=user_id)
    return keys


async def test_a_clean_sale_passes_even_before_the_sync_job_ran(shop: Container) -> None:
    option_id = await make_option(shop, stock=10)
    await _sell(shop, option_id, 4)

    result = await audit(shop, [option_id], deadline_s=10, quiet=0.3)

    assert result.verdict == OK, result.report()
    assert result.settled and result.consistent
    assert (result.sold, result.oversold) == (4, 0)
    assert result.report() == {
        "verdict": OK,
        "settled": True,
        "waited_s": result.waited_s,
        "polls": result.polls,
        "db_behind_counter_at_start": 4 if shop.stock.name == "counter" else 0,
        "worker_backlog_at_start": 0,
    }


async def test_a_purchase_still_in_flight_is_waited_for_not_reported(shop: Container) -> None:
    option_id = await make_option(shop, stock=10)
    user_id, _ = await make_user(shop)
    key = f"bench-{uuid.uuid4().hex}"
    await shop.stock.reserve([Line(option_id, 2)], key=key, buyer=str(user_id))

    async def finish_later() -> None:
        await asyncio.sleep(1.0)
        await write_order(shop, key=key, lines=[Line(option_id, 2)], user_id=user_id)
        await shop.stock.confirm(key)

    finishing = asyncio.create_task(finish_later())
    result = await audit(shop, [option_id], deadline_s=10, abandoned_after=30, quiet=0.3)
    await finishing

    assert result.verdict == OK, result.report()
    assert result.sold == 2
    assert result.waited_s >= 1.0


async def test_orders_expiring_during_the_audit_settle_to_a_clean_verdict(
    shop: Container,
) -> None:
    option_id = await make_option(shop, stock=10)
    keys = await _sell(shop, option_id, 3)

    async def expire() -> None:
        for key in keys[:2]:
            await asyncio.sleep(0.3)
            await set_order_status(shop, key, "expired")
            await asyncio.sleep(0.3)
            await shop.stock.release(key)

    expiring = asyncio.create_task(expire())
    result = await audit(shop, [option_id], deadline_s=10, quiet=0.5)
    await expiring
    if result.sold != 1:  # the audit settled in a gap between two expiries: read once more
        result = await audit(shop, [option_id], deadline_s=10, quiet=0.5)

    assert result.verdict == OK, result.report()
    assert result.sold == 1


async def test_an_abandoned_reservation_is_counted_as_held_not_waited_for(
    shop: Container,
) -> None:
    option_id = await make_option(shop, stock=10)
    await shop.stock.reserve([Line(option_id, 3)], key=f"dead-{uuid.uuid4().hex}")

    result = await audit(shop, [option_id], deadline_s=10, abandoned_after=0, quiet=0.3)

    assert result.verdict == OK, result.report()


async def test_a_purchase_that_never_finishes_is_unsettled_not_drift(shop: Container) -> None:
    option_id = await make_option(shop, stock=10)
    key = f"stuck-{uuid.uuid4().hex}"
    await shop.stock.reserve([Line(option_id, 1)], key=key)

    result = await audit(shop, [option_id], deadline_s=1.5, abandoned_after=60, poll=0.1)

    assert result.verdict == UNSETTLED, result.report()
    assert not result.settled and not result.consistent
    kept = result.report()
    assert "pending" in kept["reason"]
    assert kept["reservations"]["pending"] == 1
    assert list(kept["reservations"]["pending_keys"]) == [key]
    assert kept["ledger"][0]["held"] == 1


async def test_a_store_that_disagrees_with_the_ledger_is_drift_with_its_ledger(
    shop: Container,
) -> None:
    option_id = await make_option(shop, stock=10)
    await _sell(shop, option_id, 2)
    if shop.stock.name == "counter":
        await shop.redis.decrby(left_key(option_id), 3)  # three units vanish
    else:
        async with shop.engine.begin() as conn:
            await conn.execute(
                text("UPDATE option SET stock = stock - 3 WHERE id = :id"), {"id": option_id}
            )

    result = await audit(shop, [option_id], deadline_s=10, quiet=0.3)

    assert result.verdict == DRIFT, result.report()
    assert result.settled and not result.consistent
    kept = result.report()
    (row,) = kept["ledger"]
    assert (row["stock_total"], row["sold"], row["expected"]) == (10, 2, 8)
    drift = row["counter_drift"] if shop.stock.name == "counter" else row["db_drift"]
    assert drift == -3
    assert kept["order_statuses"] == {"pending_payment": 2}


async def test_more_sold_than_put_on_sale_is_oversold(shop: Container) -> None:
    option_id = await make_option(shop, stock=2)
    await _sell(shop, option_id, 2)
    user_id, _ = await make_user(shop)
    # An order the stock never reserved: the breach the audit exists to catch.
    await write_order(
        shop, key=f"rogue-{uuid.uuid4().hex}", lines=[Line(option_id, 1)], user_id=user_id
    )

    result = await audit(shop, [option_id], deadline_s=10, quiet=0.3)

    assert result.verdict == OVERSOLD, result.report()
    assert result.oversold == 1
    assert result.report()["ledger"][0]["sold"] == 3

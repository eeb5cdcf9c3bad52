"""Regressions for the crash-and-retry oversells, each an interleaving written step by step.

Every test runs on every strategy and ends with the stock promise checked on the real stores
(``stock_invariants``). The sequences are the ones the model-based test
(``test_stock_model.py``) shrank to, or the ones the issue described, replayed exactly with
flows (``flows.py``) that stop between store calls.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import cast

import msgspec
import pytest

from shop.adapters.redis.strategy import SwitchableStock
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.config import Settings
from shop.domain.errors import ReservationLost
from shop.domain.orders.model import Placed
from shop.domain.stock.model import Line
from tests.factories import make_option, make_user
from tests.races.flows import finish, purchase, start_purchase, start_sweep
from tests.races.stock_invariants import check_no_oversell, settle_and_check

STRATEGIES = sorted(STOCK_STRATEGIES)


@pytest.fixture(params=STRATEGIES)
async def shop(
    request: pytest.FixtureRequest, clean: Container, settings: Settings
) -> AsyncIterator[Container]:
    built = Container.build(msgspec.structs.replace(settings, stock_recovery_grace=0.0))
    await built.stock_operations.use(request.param)
    yield built
    await built.close()


async def _left(shop: Container, option_id: int) -> int:
    return (await shop.stock.available([option_id]))[option_id]


def _late(shop: Container) -> float:
    return shop.settings.reservation_timeout + 1


async def test_a_sweep_racing_a_retry_never_frees_the_retried_orders_units(
    shop: Container,
) -> None:
    """Issue 11, case 1: the first attempt dies after reserving; the sweep reads no order;
    the client's retry writes the order and confirms; the sweep then acts on what it read."""
    option_id = await make_option(shop, stock=3)
    user_id, _ = await make_user(shop)
    cmd = purchase(user_id, "k", [Line(option_id, 1)])

    first = await start_purchase(shop, cmd)
    assert first.point == "reserved"
    await first.kill()
    sweep = await start_sweep(shop, late_by=_late(shop))
    assert sweep.point == "states read"
    retry = await finish(await start_purchase(shop, cmd))
    assert isinstance(retry, Placed)
    await finish(sweep)

    await check_no_oversell(shop)
    assert await _left(shop, option_id) == 2
    await settle_and_check(shop)


async def test_a_retry_parked_on_a_swept_reservation_cannot_write_its_order(
    shop: Container,
) -> None:
    """Shrunk by the model: the retry finds the reservation, the sweep releases it, then the
    retry writes its order — a live order holding nothing. The sweep's void claim now makes
    that write impossible: the retry is refused (409) and nothing stays sold."""
    option_id = await make_option(shop, stock=3)
    user_id, _ = await make_user(shop)
    cmd = purchase(user_id, "k", [Line(option_id, 1)])

    await (await start_purchase(shop, cmd)).kill()
    sweep = await start_sweep(shop, late_by=_late(shop))
    retry = await start_purchase(shop, cmd)
    assert retry.point == "reserved"
    await finish(sweep)
    await check_no_oversell(shop)
    assert isinstance(await finish(retry), ReservationLost)

    await check_no_oversell(shop)
    assert await _left(shop, option_id) == 3
    await settle_and_check(shop)
    again = await start_purchase(shop, cmd)
    assert isinstance(again.outcome(), ReservationLost), "an abandoned key is refused at once"


async def test_a_failed_write_racing_its_twin_never_frees_the_twins_units(
    shop: Container,
) -> None:
    """Two identical requests share one reservation; one's write fails and it gives the units
    back unless an order holds them. Checking and then releasing let the twin's order slip in
    between (``_release_unless_written``)."""
    option_id = await make_option(shop, stock=3)
    user_id, _ = await make_user(shop)
    cmd = purchase(user_id, "k", [Line(option_id, 2)])

    failing = await start_purchase(shop, cmd)
    twin = await start_purchase(shop, cmd)
    assert failing.point == twin.point == "reserved"
    failing.write_fault = "before"
    await failing.run_to_next_stop()
    if failing.parked:  # stopped between its check and its release: the twin gets in
        await finish(twin)
    await finish(failing)
    await finish(twin)

    await check_no_oversell(shop)
    await settle_and_check(shop)


async def test_a_write_that_committed_but_failed_to_answer_keeps_its_units(
    shop: Container,
) -> None:
    option_id = await make_option(shop, stock=3)
    user_id, _ = await make_user(shop)
    cmd = purchase(user_id, "k", [Line(option_id, 1)])

    flow = await start_purchase(shop, cmd)
    flow.write_fault = "after"
    await finish(flow)
    await check_no_oversell(shop)
    assert await _left(shop, option_id) == 2
    await settle_and_check(shop)
    replay = await finish(await start_purchase(shop, cmd))
    assert isinstance(replay, Placed) and not replay.created


async def test_an_order_reserved_before_redis_lost_its_data_is_never_sold_twice(
    shop: Container,
) -> None:
    """Issue 11, case 3: the reservation is taken, Redis loses everything, the counter is
    rebuilt from the ledger (which cannot know the reservation), and only then does the slow
    process write its order. On the counter that order would hold units the rebuild put back
    on sale; the lost generation now fences it out (409). The other strategies keep their
    state in PostgreSQL and sell it."""
    option_id = await make_option(shop, stock=2)
    user_id, _ = await make_user(shop)
    slow = await start_purchase(shop, purchase(user_id, "slow", [Line(option_id, 1)]))
    assert slow.point == "reserved"
    await shop.redis.flushdb()
    if shop.stock.name == "counter":
        await cast("SwitchableStock", shop.stock_operations).strategy("counter").home.prepare()
    for n in range(2):
        buyer, _ = await make_user(shop)
        await finish(await start_purchase(shop, purchase(buyer, f"b{n}", [Line(option_id, 1)])))
    await check_no_oversell(shop)

    await slow.run_to_next_stop()  # writes its order, if the ledger lets it
    await check_no_oversell(shop)
    if slow.parked:
        await slow.kill()  # and dies before confirming
    else:
        assert shop.stock.name == "counter"
        assert isinstance(slow.outcome(), ReservationLost)
    await settle_and_check(shop)


async def test_confirming_a_reservation_that_ended_in_another_store_is_refused(
    shop: Container,
) -> None:
    """Issue 11, case 3: reserved under ``db``, moved to the counter by a switch, released
    there, switched back: ``confirm`` must not take the row left ``moved`` for a sale."""
    option_id = await make_option(shop, stock=3)
    start = shop.stock.name
    other = "counter" if start != "counter" else "db"
    key = f"order:{uuid.uuid4()}:k"
    await shop.stock.reserve([Line(option_id, 1)], key=key)
    await shop.stock_operations.use(other)
    await shop.stock.release(key)
    await shop.stock_operations.use(start)
    with pytest.raises(ReservationLost):
        await shop.stock.confirm(key)
    assert await _left(shop, option_id) == 3


async def test_a_reservation_moved_into_a_lost_counter_state_cannot_be_sold(
    shop: Container,
) -> None:
    """Shrunk by the model: reserved under ``db``, moved into the counter by a switch, Redis
    restarts empty, the switch back rebuilds from the ledger (the reservation had no order, so
    its unit goes back on sale), then the slow process writes its order. The reservation was
    taken under ``db`` and carries no counter generation; the rebuild now voids every moved
    reservation without an order, so the write is refused."""
    option_id = await make_option(shop, stock=3)
    user_id, _ = await make_user(shop)
    start = shop.stock.name
    other = "counter" if start != "counter" else "db"
    slow = await start_purchase(shop, purchase(user_id, "slow", [Line(option_id, 1)]))
    assert slow.point == "reserved"
    await shop.stock_operations.use(other)
    await shop.redis.flushdb()
    await shop.stock_operations.use(start)
    await check_no_oversell(shop)

    await slow.run_to_next_stop()
    await check_no_oversell(shop)
    if slow.parked:
        await slow.kill()
    else:
        assert isinstance(slow.outcome(), ReservationLost)
    await settle_and_check(shop)

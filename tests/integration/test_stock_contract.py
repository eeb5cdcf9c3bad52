"""The stock port's contract, run against every registered strategy on real PostgreSQL + Redis.

Each test switches the (clean) deployment to one strategy with the real live switch and then
talks to ``container.stock``, the port every other module uses.
"""

from __future__ import annotations

import asyncio
import socket
from typing import cast

import msgspec
import pytest
from sqlalchemy import select, text

from shop.adapters.db.stock_ledger import SqlOrderStates, ledger
from shop.adapters.db.stock_state import StateLost
from shop.adapters.db.tables import OptionRow
from shop.adapters.redis.stock_keys import ACTIVE, SWITCHING
from shop.adapters.redis.strategy import CACHE_SECONDS, SwitchableStock
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.config import Settings
from shop.domain.errors import (
    InvalidInput,
    NotFound,
    PurchaseLimitExceeded,
    ReservationLost,
    SoldOut,
)
from shop.domain.stock.model import Line
from shop.domain.stock.ports import StockReservation
from shop.domain.stock.services import reconcile_stock, sweep_reservations
from tests.factories import make_option, make_user
from tests.stock_helpers import (
    assert_conserved,
    buy,
    cancel,
    remaining,
    set_order_status,
    write_order,
)
from tests.unit.fakes import clock_ahead

STRATEGIES = sorted(STOCK_STRATEGIES)


@pytest.fixture
def unused_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=STRATEGIES)
async def stock(request: pytest.FixtureRequest, clean: Container) -> StockReservation:
    await clean.stock_operations.use(request.param)
    assert clean.stock.name == request.param
    return clean.stock


async def _left(stock: StockReservation, option_id: int) -> int:
    return (await stock.available([option_id]))[option_id]


async def test_every_strategy_is_selectable_and_reports_its_name(
    stock: StockReservation, clean: Container
) -> None:
    assert await clean.stock_operations.active_strategy() == stock.name


async def test_lines_of_one_option_are_added_up_before_the_check(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=5)
    with pytest.raises(SoldOut) as caught:
        await stock.reserve([Line(option_id, 3), Line(option_id, 3)], key="k1")
    assert caught.value.option_id == option_id
    assert await _left(stock, option_id) == 5


async def test_a_short_line_reserves_nothing(stock: StockReservation, clean: Container) -> None:
    plenty = await make_option(clean, stock=10)
    scarce = await make_option(clean, stock=1)
    with pytest.raises(SoldOut) as caught:
        await stock.reserve([Line(plenty, 2), Line(scarce, 2)], key="k1")
    assert caught.value.option_id == scarce
    assert await stock.available([plenty, scarce]) == {plenty: 10, scarce: 1}


async def test_a_reservation_takes_every_line(stock: StockReservation, clean: Container) -> None:
    first = await make_option(clean, stock=10)
    second = await make_option(clean, stock=10)
    reservation = await stock.reserve([Line(second, 1), Line(first, 2), Line(second, 3)], key="k")
    assert reservation.lines == (Line(first, 2), Line(second, 4))
    assert await stock.available([first, second]) == {first: 8, second: 6}


async def test_the_last_unit_can_be_taken_and_then_it_is_sold_out(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=2)
    await stock.reserve([Line(option_id, 2)], key="all")
    with pytest.raises(SoldOut):
        await stock.reserve([Line(option_id, 1)], key="late")
    assert await _left(stock, option_id) == 0


async def test_retry_with_the_same_key_reserves_once(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=5)
    first = await stock.reserve([Line(option_id, 2)], key="retry")
    second = await stock.reserve([Line(option_id, 2)], key="retry")
    assert first == second
    assert await _left(stock, option_id) == 3


async def test_release_twice_returns_units_once(stock: StockReservation, clean: Container) -> None:
    option_id = await make_option(clean, stock=5)
    await stock.reserve([Line(option_id, 2)], key="pending")
    await stock.reserve([Line(option_id, 1)], key="confirmed")
    await stock.confirm("confirmed")
    for key in ("pending", "confirmed", "pending", "confirmed"):
        await stock.release(key)
    assert await _left(stock, option_id) == 5


async def test_releasing_an_unknown_key_is_a_no_op(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=1)
    await stock.release("nobody")
    assert await _left(stock, option_id) == 1


async def test_confirming_a_released_or_unknown_reservation_is_refused(
    stock: StockReservation, clean: Container
) -> None:
    """An order written after the sweep released its reservation holds no units: confirming
    it must fail (the orders module then voids the order) rather than sell them twice."""
    option_id = await make_option(clean, stock=2)
    await stock.reserve([Line(option_id, 2)], key="late")
    await stock.release("late")
    with pytest.raises(ReservationLost):
        await stock.confirm("late")
    with pytest.raises(ReservationLost):
        await stock.confirm("nobody")
    assert await _left(stock, option_id) == 2


async def test_a_released_key_may_reserve_again(stock: StockReservation, clean: Container) -> None:
    option_id = await make_option(clean, stock=3)
    await stock.reserve([Line(option_id, 2)], key="again")
    await stock.release("again")
    await stock.reserve([Line(option_id, 3)], key="again")
    assert await _left(stock, option_id) == 0


async def test_put_on_sale_raises_total_and_remaining(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=3)
    await stock.reserve([Line(option_id, 1)], key="k")
    await stock.put_on_sale(option_id, 4)
    assert await _left(stock, option_id) == 6
    assert (await remaining(clean, [option_id]))[option_id] == 6
    entry = (await ledger(clean.engine, [option_id]))[option_id]
    assert (entry.stock_total, entry.stock) == (7, 6)


async def test_put_on_sale_refuses_nonsense(stock: StockReservation, clean: Container) -> None:
    option_id = await make_option(clean, stock=0)
    with pytest.raises(InvalidInput):
        await stock.put_on_sale(option_id, 0)
    with pytest.raises(NotFound):
        await stock.put_on_sale(option_id + 1000, 1)


async def test_available_is_zero_for_unknown_options(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=0)
    assert await stock.available([option_id, option_id + 1000]) == {
        option_id: 0,
        option_id + 1000: 0,
    }
    with pytest.raises(SoldOut):
        await stock.reserve([Line(option_id, 1)], key="nothing")


async def test_scripts_flushed_from_redis_are_loaded_again(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=3)
    await stock.reserve([Line(option_id, 1)], key="before")
    await clean.redis.script_flush()
    await stock.reserve([Line(option_id, 1)], key="after")
    await stock.confirm("after")
    await stock.release("before")
    assert await _left(stock, option_id) == 2


async def test_an_option_that_does_not_exist_is_sold_out(
    stock: StockReservation, clean: Container
) -> None:
    with pytest.raises(SoldOut) as caught:
        await stock.reserve([Line(424242, 1)], key="ghost")
    assert caught.value.option_id == 424242


async def test_a_buyer_may_not_hold_more_than_the_limit(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=10)
    await stock.reserve([Line(option_id, 1)], key="a1", buyer="alice", per_buyer_limit=2)
    with pytest.raises(PurchaseLimitExceeded) as caught:
        await stock.reserve([Line(option_id, 2)], key="a2", buyer="alice", per_buyer_limit=2)
    assert caught.value.limit == 2
    await stock.reserve([Line(option_id, 2)], key="b1", buyer="bob", per_buyer_limit=2)
    await stock.reserve([Line(option_id, 1)], key="a3", buyer="alice", per_buyer_limit=2)
    assert await _left(stock, option_id) == 6


async def test_a_release_gives_the_allowance_back(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=10)
    await stock.reserve([Line(option_id, 1)], key="a1", buyer="alice", per_buyer_limit=1)
    await stock.confirm("a1")
    await stock.release("a1")
    await stock.reserve([Line(option_id, 1)], key="a2", buyer="alice", per_buyer_limit=1)
    with pytest.raises(PurchaseLimitExceeded):
        await stock.reserve([Line(option_id, 1)], key="a3", buyer="alice", per_buyer_limit=1)


async def test_units_bought_without_a_limit_still_count_against_one_later(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=10)
    await stock.reserve([Line(option_id, 2)], key="a1", buyer="alice")
    with pytest.raises(PurchaseLimitExceeded):
        await stock.reserve([Line(option_id, 1)], key="a2", buyer="alice", per_buyer_limit=2)


async def test_a_limit_per_option_applies_to_the_options_it_names_only(
    stock: StockReservation, clean: Container
) -> None:
    """A drop's option carries the drop's limit; the other line of the order has none."""
    in_drop = await make_option(clean, stock=10)
    outside = await make_option(clean, stock=10)
    limits = {in_drop: 1}
    await stock.reserve(
        [Line(in_drop, 1), Line(outside, 5)], key="a1", buyer="alice", per_buyer_limit=limits
    )
    with pytest.raises(PurchaseLimitExceeded) as caught:
        await stock.reserve(
            [Line(outside, 1), Line(in_drop, 1)], key="a2", buyer="alice", per_buyer_limit=limits
        )
    assert (caught.value.option_id, caught.value.limit) == (in_drop, 1)
    assert await _left(stock, in_drop) == 9
    assert await _left(stock, outside) == 5  # the refused reservation took nothing
    await stock.reserve([Line(outside, 5)], key="a3", buyer="alice", per_buyer_limit=limits)


async def test_concurrent_requests_of_one_buyer_respect_a_limit_per_option(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=50)
    outcomes = await asyncio.gather(
        *(
            stock.reserve(
                [Line(option_id, 1)], key=f"c{n}", buyer="carol", per_buyer_limit={option_id: 2}
            )
            for n in range(12)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 2
    assert all(
        isinstance(o, PurchaseLimitExceeded) for o in outcomes if isinstance(o, BaseException)
    )
    assert await _left(stock, option_id) == 48


async def test_a_limit_needs_a_buyer(stock: StockReservation, clean: Container) -> None:
    option_id = await make_option(clean, stock=10)
    with pytest.raises(InvalidInput):
        await stock.reserve([Line(option_id, 1)], key="k", per_buyer_limit=1)


async def test_the_check_constraint_is_the_last_line_of_defence(clean: Container) -> None:
    """Below every strategy: the schema itself refuses negative stock (run once, not per
    strategy, since no strategy is involved)."""
    option_id = await make_option(clean, stock=1)
    with pytest.raises(Exception, match="stock_non_negative"):
        async with clean.engine.begin() as conn:
            await conn.execute(text(f"UPDATE option SET stock = -1 WHERE id = {option_id}"))


async def test_sync_writes_what_is_left_to_the_database(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=5)
    await stock.reserve([Line(option_id, 2)], key="k")
    await clean.stock_operations.sync()
    async with clean.engine.connect() as conn:
        db = (await conn.execute(select(OptionRow.stock).where(OptionRow.id == option_id))).scalar()
    assert db == 3


async def test_the_sweep_settles_by_the_order_each_reservation_belongs_to(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=10)
    user_id, _ = await make_user(clean)
    # Abandoned: the process died before writing the order.
    await stock.reserve([Line(option_id, 1)], key="abandoned")
    # Written, but never confirmed (the process died after the insert).
    await stock.reserve([Line(option_id, 1)], key="written")
    await write_order(clean, key="written", lines=[Line(option_id, 1)], user_id=user_id)
    # Cancelled by the orders module, which then died before releasing.
    await buy(clean, [Line(option_id, 1)], key="cancelled", user_id=user_id)
    await set_order_status(clean, "cancelled", "cancelled")
    # Shipped: can never be released again.
    await buy(clean, [Line(option_id, 1)], key="shipped", user_id=user_id)
    await set_order_status(clean, "shipped", "shipping")
    # Young and pending: its order may be committing right now.
    await stock.reserve([Line(option_id, 1)], key="young")

    early = await sweep_reservations(
        stock=stock,
        operations=clean.stock_operations,
        orders=SqlOrderStates(clean.engine),
        pending_timeout=60,
        clock=clean.clock,
    )
    assert early.released == ["cancelled"]
    assert early.retired == ["shipped"]
    assert await _left(stock, option_id) == 6

    later = await sweep_reservations(
        stock=stock,
        operations=clean.stock_operations,
        orders=SqlOrderStates(clean.engine),
        pending_timeout=60,
        clock=clock_ahead(120),
    )
    assert sorted(later.released) == ["abandoned", "young"]
    assert later.confirmed == ["written"]
    assert await _left(stock, option_id) == 8
    held = {reservation.key for reservation in await clean.stock_operations.open_reservations()}
    assert held == {"written"}
    await assert_conserved(clean, [option_id])


async def test_a_cancel_after_the_sweep_retired_nothing_gives_units_back_once(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=3)
    user_id, _ = await make_user(clean)
    await buy(clean, [Line(option_id, 2)], key="order", user_id=user_id)
    await cancel(clean, "order")
    await cancel(clean, "order")
    assert await _left(stock, option_id) == 3
    await assert_conserved(clean, [option_id])


async def test_reconcile_reports_drift_and_fix_repairs_it_from_the_ledger(
    stock: StockReservation, clean: Container
) -> None:
    option_id = await make_option(clean, stock=10)
    untouched = await make_option(clean, stock=4)
    user_id, _ = await make_user(clean)
    await buy(clean, [Line(option_id, 3)], key="sold", user_id=user_id)
    await stock.reserve([Line(option_id, 1)], key="in-flight")
    # Damage the store the strategy sells from.
    if stock.name == "counter":
        await clean.redis.set(f"shop:stock:{{o{option_id}}}:left", 1)
    else:
        async with clean.engine.begin() as conn:
            await conn.execute(text(f"UPDATE option SET stock = 1 WHERE id = {option_id}"))
    orders = SqlOrderStates(clean.engine)
    reported = await reconcile_stock(
        stock=stock,
        operations=clean.stock_operations,
        orders=orders,
        pending_timeout=60,
        clock=clean.clock,
        fix=False,
    )
    assert [(o.option_id, o.authoritative, o.expected) for o in reported] == [(option_id, 1, 6)]
    await reconcile_stock(
        stock=stock,
        operations=clean.stock_operations,
        orders=orders,
        pending_timeout=60,
        clock=clean.clock,
        fix=True,
    )
    assert await stock.available([option_id, untouched]) == {option_id: 6, untouched: 4}
    assert not [o for o in await clean.stock_operations.status() if o.drift]
    await stock.release("in-flight")
    assert await _left(stock, option_id) == 7


async def test_db_keeps_selling_while_redis_is_unreachable(
    clean: Container, settings: Settings, unused_tcp_port: int
) -> None:
    await clean.stock_operations.use("db")
    option_id = await make_option(clean, stock=3)
    cut_off = Container.build(
        msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{unused_tcp_port}/0")
    )
    try:
        await cut_off.stock.reserve([Line(option_id, 2)], key="no-redis")
        await cut_off.stock.confirm("no-redis")
        assert await cut_off.stock.available([option_id]) == {option_id: 1}
        assert cut_off.stock.name == "db"
    finally:
        await cut_off.close()


async def test_a_switch_that_died_midway_is_healed_from_the_database(clean: Container) -> None:
    await clean.stock_operations.use("counter")
    option_id = await make_option(clean, stock=3)
    # The operator's process died after fencing: 'switching' stays, its lock expired.
    await clean.redis.set(ACTIVE, SWITCHING)
    await asyncio.sleep(CACHE_SECONDS)

    await clean.stock.reserve([Line(option_id, 1)], key="after")

    assert await clean.redis.get(ACTIVE) == b"counter"
    assert await clean.stock.available([option_id]) == {option_id: 2}


@pytest.mark.parametrize(
    ("source", "target"),
    [(a, b) for a in STRATEGIES for b in STRATEGIES if a != b],
)
async def test_a_switch_moves_every_unit_reservation_and_allowance(
    source: str, target: str, clean: Container
) -> None:
    await clean.stock_operations.use(source)
    option_id = await make_option(clean, stock=10)
    user_id, _ = await make_user(clean)
    buyer = str(user_id)
    await buy(clean, [Line(option_id, 2)], key="confirmed", user_id=user_id, per_buyer_limit=3)
    await clean.stock.reserve([Line(option_id, 1)], key="pending", buyer=buyer)

    assert await clean.stock_operations.use(target) == source

    stock = clean.stock
    assert stock.name == target
    assert await stock.available([option_id]) == {option_id: 7}
    # Retrying the pending reservation under the new strategy takes nothing more.
    await stock.reserve([Line(option_id, 1)], key="pending", buyer=buyer)
    # The buyer already holds 3: the allowance moved along.
    with pytest.raises(PurchaseLimitExceeded):
        await stock.reserve([Line(option_id, 1)], key="more", buyer=buyer, per_buyer_limit=3)
    # Both reservations are released where they now live, once.
    await cancel(clean, "confirmed")
    await stock.release("pending")
    await stock.release("pending")
    assert await stock.available([option_id]) == {option_id: 10}
    await stock.reserve([Line(option_id, 3)], key="again", buyer=buyer, per_buyer_limit=3)
    assert {held.key for held in await clean.stock_operations.open_reservations()} == {"again"}
    await stock.release("again")
    await assert_conserved(clean, [option_id])


async def test_a_switch_refuses_to_export_counters_redis_lost_meanwhile(clean: Container) -> None:
    await clean.stock_operations.use("counter")
    await make_option(clean, stock=3)
    counter = cast("SwitchableStock", clean.stock_operations).strategy("counter").home
    await clean.redis.flushdb()
    async with clean.engine.connect() as conn:
        with pytest.raises(StateLost, match="Redis lost"):
            await counter.export_state(conn)

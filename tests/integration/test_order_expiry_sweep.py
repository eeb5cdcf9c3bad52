"""The expiry sweep on the real PostgreSQL and Redis: a drop's backlog expired concurrently by
overlapping sweeps, each order once, and the index its query runs on."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from shop.bootstrap import Container
from shop.domain.orders import services
from shop.domain.orders.model import OrderStatus
from tests.factories import make_option, make_user
from tests.integration.test_orders_db import buy
from tests.orders_client import stock_and_ledger
from tests.unit.fakes import FakeClock

BACKLOG = 120


@pytest.mark.parametrize("strategy", ["counter", "db"])
async def test_overlapping_sweeps_expire_a_backlog_releasing_each_order_once(
    clean: Container, strategy: str
) -> None:
    """Two sweeps at once (two workers) over orders that all fell due in the same second:
    each order is expired by exactly one of them (its row lock decides), and exactly the
    backlog's units go back on sale — none twice, none left held."""
    await clean.stock_operations.use(strategy)
    option = await make_option(clean, stock=BACKLOG + 5, price=100)
    user_id, _ = await make_user(clean)
    made = [await buy(clean, user_id, (option, 1)) for _ in range(BACKLOG)]
    assert (await clean.stock.available([option]))[option] == 5
    due = FakeClock(max(o.pay_by for o in made) + timedelta(seconds=1))

    sweeps = [
        services.expire_due_orders(orders=clean.orders, stock=clean.stock, clock=due, batch=50)
        for _ in range(2)
    ]
    counts = await asyncio.gather(*sweeps)

    assert sum(counts) == BACKLOG, f"each order expired by exactly one sweep: {counts}"
    for order in made:
        final = await clean.orders.get(order.id)
        assert final is not None
        assert final.status is OrderStatus.EXPIRED
        assert final.stock_released_at is not None
    assert (await clean.stock.available([option]))[option] == BACKLOG + 5
    await clean.stock_operations.sync()
    assert await stock_and_ledger(clean, option) == (BACKLOG + 5, BACKLOG + 5)
    assert await services.expire_due_orders(orders=clean.orders, stock=clean.stock, clock=due) == 0


async def test_the_sweeps_query_runs_on_the_partial_pay_by_index(clean: Container) -> None:
    """The sweep runs every second: its query must be answered from the partial index on
    unpaid orders' ``pay_by``, never by scanning every order ever placed."""
    option = await make_option(clean, stock=5)
    user_id, _ = await make_user(clean)
    order = await buy(clean, user_id, (option, 1))
    seen: list[tuple[str, Any]] = []

    def capture(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if "pay_by" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(clean.engine.sync_engine, "before_cursor_execute", capture)
    try:
        assert await clean.orders.overdue(order.pay_by, limit=100) == [order.id]
    finally:
        event.remove(clean.engine.sync_engine, "before_cursor_execute", capture)
    (statement, parameters) = seen[-1]
    async with clean.engine.connect() as conn:
        # A handful of rows would be scanned anyway: ask whether the index can serve it.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = (await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)).scalars().all()
    assert any("purchase_order_pending_pay_by_idx" in line for line in plan), plan
    assert not any("Sort" in line for line in plan), f"the index gives pay_by order: {plan}"

"""The stock promise as checks on the real stores, shared by the model and the regressions."""

from __future__ import annotations

from typing import cast

from sqlalchemy import select

from shop.adapters.db.tables import OrderLineRow, OrderRow
from shop.adapters.redis.strategy import SwitchableStock
from shop.bootstrap import Container
from shop.domain.orders.status import OrderStatus
from shop.domain.stock.model import Line, merge_lines
from shop.domain.stock.services import sweep_reservations
from tests.unit.fakes import clock_ahead


async def check_no_oversell(container: Container) -> None:
    """True at every moment: nothing below zero, and a unit is either on sale, held by a
    reservation or in a live order — never on sale and sold at once."""
    for entry in await container.stock_operations.status():
        assert entry.sold <= entry.stock_total, f"oversold: {entry}"
        left = entry.authoritative
        if left is None:  # the store lost its state; the next sale rebuilds it first
            continue
        assert left >= 0, f"below zero: {entry}"
        assert left + entry.sold <= entry.stock_total, f"sold and on sale: {entry}"


async def settle(container: Container) -> None:
    """What time does to a deployment whose processes stopped: a lost counter state is
    rebuilt, and the sweep runs past the reservation timeout (twice: it settles in passes)."""
    operations = container.stock_operations
    if await operations.active_strategy() == "counter":
        await cast("SwitchableStock", container.stock_operations).strategy("counter").home.prepare()
    for _ in range(2):
        await sweep_reservations(
            stock=container.stock,
            operations=operations,
            orders=container.order_states,
            pending_timeout=container.settings.reservation_timeout,
            clock=clock_ahead(container.settings.reservation_timeout + 1),
        )


async def check_settled(container: Container) -> None:
    """Once settled: conservation, and every live order's units held by exactly one
    reservation with the order's lines."""
    for entry in await container.stock_operations.status():
        assert entry.authoritative is not None, f"no store holds it: {entry}"
        assert entry.held == 0, f"held outside any order: {entry}"
        assert entry.authoritative + entry.sold == entry.stock_total, f"drift: {entry}"
    held = {r.key: r.lines for r in await container.stock_operations.open_reservations()}
    async with container.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(OrderRow.reservation_key, OrderLineRow.option_id, OrderLineRow.quantity)
                .join(OrderLineRow, OrderLineRow.order_id == OrderRow.id)
                .where(OrderRow.status.in_(OrderStatus.values(OrderStatus.RELEASABLE)))
            )
        ).all()
    orders: dict[str, list[Line]] = {}
    for key, option_id, quantity in rows:
        orders.setdefault(key, []).append(Line(int(option_id), int(quantity)))
    for key, lines in orders.items():
        assert key in held, f"live order {key} holds no reservation"
        assert held[key] == merge_lines(lines), f"order {key} and its reservation differ"


async def settle_and_check(container: Container) -> None:
    await check_no_oversell(container)
    await settle(container)
    await check_settled(container)

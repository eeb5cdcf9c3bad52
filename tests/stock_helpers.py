"""What the stock tests need from the orders side: order rows written the way place_order does.

The orders module is built elsewhere; these helpers follow its contract with the stock port
(reserve → insert the order holding ``reservation_key`` → confirm; on a failed write, release)
and write straight to its tables, so stock tests can check conservation against real rows.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence

from sqlalchemy import insert, select, update

from shop.adapters.db.stock_ledger import ledger
from shop.adapters.db.tables import OptionRow, OrderLineRow, OrderRow
from shop.bootstrap import Container
from shop.domain.stock.model import Line, PerBuyerLimit
from shop.domain.stock.ports import StockReservation


async def write_order(
    container: Container,
    *,
    key: str,
    lines: Sequence[Line],
    user_id: uuid.UUID,
    status: str = "pending_payment",
) -> uuid.UUID:
    """Insert an order holding reservation ``key`` with its lines (one transaction)."""
    order_id = uuid.uuid4()
    async with container.engine.begin() as conn:
        products = dict(
            (
                await conn.execute(
                    select(OptionRow.id, OptionRow.product_id).where(
                        OptionRow.id.in_([line.option_id for line in lines])
                    )
                )
            ).all()
        )
        await conn.execute(
            insert(OrderRow).values(
                id=order_id,
                user_id=user_id,
                status=status,
                payment_method="card",
                pay_by=datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=15),
                total=0,
                shipping_address="1 Test Street",
                idempotency_key=key[-200:],
                reservation_key=key,
                request_fingerprint="test",
            )
        )
        await conn.execute(
            insert(OrderLineRow),
            [
                {
                    "order_id": order_id,
                    "option_id": line.option_id,
                    "product_id": products[line.option_id],
                    "quantity": line.quantity,
                    "unit_price": 0,
                }
                for line in lines
            ],
        )
    return order_id


async def set_order_status(container: Container, key: str, status: str) -> None:
    async with container.engine.begin() as conn:
        await conn.execute(
            update(OrderRow).where(OrderRow.reservation_key == key).values(status=status)
        )


async def buy(
    container: Container,
    lines: Sequence[Line],
    *,
    key: str,
    user_id: uuid.UUID,
    stock: StockReservation | None = None,
    per_buyer_limit: PerBuyerLimit = None,
) -> str:
    """place_order's dance: reserve, write the order, confirm. Returns "ok" or raises."""
    port = stock or container.stock
    await port.reserve(lines, key=key, buyer=str(user_id), per_buyer_limit=per_buyer_limit)
    try:
        await write_order(container, key=key, lines=lines, user_id=user_id)
    except Exception:
        await port.release(key)
        raise
    await port.confirm(key)
    return "ok"


async def cancel(container: Container, key: str, *, stock: StockReservation | None = None) -> None:
    """The orders module's cancel: status first, then the units go back."""
    await set_order_status(container, key, "cancelled")
    await (stock or container.stock).release(key)


async def remaining(container: Container, option_ids: Sequence[int]) -> dict[int, int]:
    """What the active strategy sells from, after writing counters back to the database."""
    await container.stock_operations.sync()
    return dict(await container.stock.available(option_ids))


async def assert_conserved(container: Container, option_ids: Sequence[int]) -> None:
    """stock_total = remaining + live order lines, for the active store and for option.stock."""
    left = await remaining(container, option_ids)
    entries = await ledger(container.engine, option_ids)
    for option_id in option_ids:
        entry = entries[option_id]
        assert entry.balances(left[option_id]), (option_id, entry, left[option_id])
        assert entry.stock == left[option_id], ("option.stock lags the store", entry, left)

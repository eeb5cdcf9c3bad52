"""A tiny client for the orders API and the ledger checks tests share (cf. cosmicpython's
``api_client.py``): tests read as purchases, not as request plumbing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from shop.adapters.db.tables import OptionRow, OrderLineRow, OrderRow
from shop.bootstrap import Container
from shop.domain.orders.status import OrderStatus
from tests.conftest import with_settings as with_settings


def order_body(
    *lines: tuple[int, int],
    payment_method: str = "card",
    shipping_address: str = "1 Main St, Springfield",
) -> dict[str, Any]:
    return {
        "lines": [{"option_id": option_id, "quantity": qty} for option_id, qty in lines],
        "payment_method": payment_method,
        "shipping_address": shipping_address,
    }


async def place(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any],
    *,
    key: str | None = None,
) -> httpx.Response:
    return await client.post(
        "/api/orders",
        json=body,
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def act(
    client: httpx.AsyncClient, headers: dict[str, str], order_id: str, action: str, **body: Any
) -> httpx.Response:
    """POST /api/orders/{id}/{action} (payments, cancel, refund)."""
    return await client.post(f"/api/orders/{order_id}/{action}", json=body or None, headers=headers)


async def admin(
    client: httpx.AsyncClient, headers: dict[str, str], order_id: str, action: str
) -> httpx.Response:
    """POST /api/admin/orders/{id}/{action} (ship, deliver)."""
    return await client.post(f"/api/admin/orders/{order_id}/{action}", headers=headers)


async def stock_and_ledger(container: Container, option_id: int) -> tuple[int, int]:
    """(option.stock, stock_total − Σ units of live order lines): equal once settled."""
    async with container.engine.connect() as conn:
        stock, total = (
            await conn.execute(
                select(OptionRow.stock, OptionRow.stock_total).where(OptionRow.id == option_id)
            )
        ).one()
        sold = (
            await conn.execute(
                select(func.coalesce(func.sum(OrderLineRow.quantity), 0))
                .join(OrderRow, OrderRow.id == OrderLineRow.order_id)
                .where(
                    OrderLineRow.option_id == option_id,
                    OrderRow.status.in_(OrderStatus.values(OrderStatus.LIVE)),
                )
            )
        ).scalar_one()
    return int(stock), int(total) - int(sold)

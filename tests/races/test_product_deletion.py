"""Deleting a product while its options are being bought, on every stock strategy.

Either the delete wins (the buyers in flight get 409 naming the option) or an order wins (the
delete gets 409); never a 500, never an order without lines, and never a reservation left
holding units of an option that is gone. Stores that keep a counter for the vanished option
(Redis) must not trip the sync, the sweep, the status or a switch afterwards.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

import pytest
from sqlalchemy import func, select

from shop.adapters.db.tables import OrderLineRow, OrderRow, ProductRow
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.domain.identity.model import Role
from shop.domain.stock.model import Line, Reservation
from shop.domain.stock.ports import StockReservation
from shop.domain.stock.services import sweep_reservations
from shop.entrypoints.http.app import create_app
from tests.conftest import bearer, http_client
from tests.factories import make_option, make_product
from tests.orders_client import order_body, place
from tests.races.test_order_race import buyers

STRATEGIES = sorted(STOCK_STRATEGIES)


class DeleteAfterReserve:
    """The real stock port, with a step run between the reservation and the order write:
    the deterministic interleaving of "the admin deletes the product mid-purchase"."""

    def __init__(self, inner: StockReservation, between: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._between = between

    @property
    def name(self) -> str:
        return self._inner.name

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: int | None = None,
    ) -> Reservation:
        reservation = await self._inner.reserve(
            lines, key=key, buyer=buyer, per_buyer_limit=per_buyer_limit
        )
        await self._between()
        return reservation

    async def confirm(self, key: str) -> None:
        await self._inner.confirm(key)

    async def release(self, key: str) -> None:
        await self._inner.release(key)

    async def put_on_sale(self, option_id: int, units: int) -> None:
        await self._inner.put_on_sale(option_id, units)

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        return await self._inner.available(option_ids)


async def _use(container: Container, strategy: str) -> None:
    await container.stock_operations.use(strategy)
    assert container.stock.name == strategy


async def _orders_without_lines(container: Container) -> int:
    async with container.engine.connect() as conn:
        lonely = await conn.scalar(
            select(func.count())
            .select_from(OrderRow)
            .where(~select(OrderLineRow.id).where(OrderLineRow.order_id == OrderRow.id).exists())
        )
    return int(lonely or 0)


async def _product_exists(container: Container, product_id: int) -> bool:
    async with container.engine.connect() as conn:
        found = await conn.scalar(select(ProductRow.id).where(ProductRow.id == product_id))
    return found is not None


async def _open_keys(container: Container) -> set[str]:
    return {held.key for held in await container.stock_operations.open_reservations()}


async def _assert_stores_settle(container: Container, option_ids: Sequence[int]) -> None:
    """The stock jobs and the operator's view still work with an option gone."""
    await container.stock_operations.sync()
    await sweep_reservations(
        stock=container.stock,
        operations=container.stock_operations,
        orders=container.order_states,
        pending_timeout=0.0,
    )
    assert await container.stock_operations.status() is not None
    assert (await container.stock.available(option_ids)) is not None


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_product_deleted_between_reserve_and_write_answers_409_and_gives_units_back(
    clean: Container, strategy: str
) -> None:
    await _use(clean, strategy)
    product_id = await make_product(clean)
    option_id = await make_option(clean, stock=5, product_id=product_id)
    other = await make_option(clean, stock=5)

    async def delete_product() -> None:
        admin = bearer(clean, role=Role.ADMIN)
        async with http_client(create_app(clean)) as admin_client:
            deleted = await admin_client.delete(f"/api/admin/products/{product_id}", headers=admin)
        assert deleted.status_code == 204, deleted.text

    racing = dataclasses.replace(clean, stock=DeleteAfterReserve(clean.stock, delete_product))
    (customer,) = await buyers(clean, 1)
    key = uuid.uuid4().hex
    async with http_client(create_app(racing)) as client:
        response = await place(client, customer, order_body((other, 1), (option_id, 2)), key=key)

    assert response.status_code == 409, response.text
    assert response.json()["extra"]["option_id"] == option_id
    assert not await _product_exists(clean, product_id)
    assert await _orders_without_lines(clean) == 0
    assert await _open_keys(clean) == set()
    assert (await clean.stock.available([other]))[other] == 5
    await _assert_stores_settle(clean, [option_id, other])

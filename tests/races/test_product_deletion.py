"""Deleting a product while its options are being bought, on every stock strategy.

Either the delete wins (the buyers in flight get 409 naming the option) or an order wins (the
delete gets 409); never a 500, never an order without lines, and never a reservation left
holding units of an option that is gone. Stores that keep a counter for the vanished option
(Redis) must not trip the sync, the sweep, the status or a switch afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import func, select, text

from shop.adapters.db.tables import OrderLineRow, OrderRow, ProductRow
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.domain.identity.model import Role
from shop.domain.stock.services import sweep_reservations
from shop.entrypoints.http.app import create_app
from tests.conftest import bearer, http_client
from tests.factories import make_option, make_product
from tests.orders_client import order_body, place
from tests.races.flows import GatedStock
from tests.races.test_order_race import buyers

STRATEGIES = sorted(STOCK_STRATEGIES)
BUYERS = 60
# Buyers parked at their order write at once (their orders batched behind one waiting insert).
HELD_BUYERS = 12


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
        clock=container.clock,
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

    async def delete_after_reserve(_point: str) -> None:
        await delete_product()

    racing = dataclasses.replace(clean, stock=GatedStock(clean.stock, delete_after_reserve))
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
    for moved in [*(s for s in STRATEGIES if s != strategy), strategy]:
        await _use(clean, moved)  # a switch carries (or drops) the vanished option's state
        assert (await clean.stock.available([other]))[other] == 5


@asynccontextmanager
async def order_writes_held(container: Container) -> AsyncIterator[None]:
    """Every order insert waits (a SHARE lock on ``purchase_order``) until the block exits:
    buyers have reserved and are parked between their reservation and their write."""
    async with container.engine.connect() as conn:
        await conn.execute(text("LOCK TABLE purchase_order IN SHARE MODE"))
        try:
            yield
        finally:
            await conn.rollback()


async def wait_until_parked(container: Container, count: int) -> None:
    """``count`` buyers hold their reservation and their order writes are waiting on the
    lock: the first batch's insert in PostgreSQL, the others queued behind it in the
    process (group commit: buyers share one insert, so one waiting statement can be many)."""
    query = text(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'purchase_order'::regclass"
    )
    async with asyncio.timeout(20):
        while True:
            async with container.engine.connect() as conn:
                blocked = await conn.scalar(query) or 0
            if blocked and len(await _open_keys(container)) >= count:
                await asyncio.sleep(0.05)  # the last reserved buyer hands its order over
                return
            await asyncio.sleep(0.02)


def _outcomes(bought: Sequence[httpx.Response], options: Sequence[int]) -> Counter[int]:
    statuses = Counter(response.status_code for response in bought)
    assert set(statuses) <= {201, 404, 409}, [r.text for r in bought if r.status_code >= 500][:3]
    for response in bought:
        if response.status_code == 409:
            assert response.json()["extra"]["option_id"] in options, response.text
    return statuses


async def _assert_decided(
    container: Container,
    product_id: int,
    options: Sequence[int],
    deleted: httpx.Response,
    statuses: Counter[int],
) -> None:
    """One side won: the delete (no order, no reservation left) or an order (product stays)."""
    assert deleted.status_code in (204, 409), deleted.text
    assert await _orders_without_lines(container) == 0
    if deleted.status_code == 204:
        assert statuses[201] == 0
        assert not await _product_exists(container, product_id)
        assert await _open_keys(container) == set()
    else:
        assert statuses[201] >= 1
        assert await _product_exists(container, product_id)
    await _assert_stores_settle(container, options)


async def _buyers_parked_at_their_write(
    container: Container,
    client: httpx.AsyncClient,
    crowd: Sequence[dict[str, str]],
    options: Sequence[int],
) -> list[asyncio.Task[httpx.Response]]:
    """``HELD_BUYERS`` purchases started inside ``order_writes_held``, once all are parked."""
    buying = [
        asyncio.create_task(place(client, crowd[i], order_body((options[i % len(options)], 1))))
        for i in range(HELD_BUYERS)
    ]
    await wait_until_parked(container, HELD_BUYERS)
    return buying


async def _sale(container: Container) -> tuple[int, list[int], list[dict[str, str]]]:
    product_id = await make_product(container)
    options = [await make_option(container, stock=BUYERS, product_id=product_id) for _ in "ab"]
    return product_id, options, await buyers(container, BUYERS)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_delete_while_buyers_wait_to_write_wins_and_each_buyer_gets_409(
    clean: Container, strategy: str
) -> None:
    await _use(clean, strategy)
    product_id, options, crowd = await _sale(clean)
    admin = bearer(clean, role=Role.ADMIN)
    async with http_client(create_app(clean)) as client:
        async with order_writes_held(clean):
            buying = await _buyers_parked_at_their_write(clean, client, crowd, options)
            deleted = await client.delete(f"/api/admin/products/{product_id}", headers=admin)
        bought = await asyncio.gather(*buying)

    statuses = _outcomes(bought, options)
    assert deleted.status_code == 204, deleted.text
    assert statuses == {409: HELD_BUYERS}
    assert all("no longer on sale" in r.json()["detail"] for r in bought)
    await _assert_decided(clean, product_id, options, deleted, statuses)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_delete_racing_a_burst_of_order_writes_is_decided_one_way(
    clean: Container, strategy: str
) -> None:
    """The writes are released and the delete sent at the same moment: the delete retries
    while the writes hold the option rows, then finds the orders (or beat them all)."""
    await _use(clean, strategy)
    product_id, options, crowd = await _sale(clean)
    admin = bearer(clean, role=Role.ADMIN)
    async with http_client(create_app(clean)) as client:
        async with order_writes_held(clean):
            buying = await _buyers_parked_at_their_write(clean, client, crowd, options)
            deleting = asyncio.create_task(
                client.delete(f"/api/admin/products/{product_id}", headers=admin)
            )
        deleted, *bought = await asyncio.gather(deleting, *buying)

    statuses = _outcomes(bought, options)
    await _assert_decided(clean, product_id, options, deleted, statuses)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_deleting_a_product_mid_sale_is_decided_one_way_or_the_other(
    clean: Container, strategy: str
) -> None:
    """No staging: the delete and a crowd of purchases start together."""
    await _use(clean, strategy)
    product_id, options, crowd = await _sale(clean)
    admin = bearer(clean, role=Role.ADMIN)
    async with http_client(create_app(clean)) as client:
        deleted, *bought = await asyncio.gather(
            client.delete(f"/api/admin/products/{product_id}", headers=admin),
            *(place(client, crowd[i], order_body((options[i % 2], 1))) for i in range(BUYERS)),
        )

    statuses = _outcomes(bought, options)
    await _assert_decided(clean, product_id, options, deleted, statuses)

"""First come, first served over HTTP, for every registered stock strategy.

300 distinct buyers race for 50 units: exactly 50 orders, 250 sold-out answers. Cancelling
10 puts 10 back and exactly 10 more sell. The ledger agrees afterwards: for the option,
``stock_total − Σ units of live order lines`` is what the strategy says is left.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from sqlalchemy import insert

from shop.adapters.db.tables import UserRow
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.config import Settings
from shop.domain.identity.model import Principal, Role
from shop.entrypoints.http.app import create_app
from tests.conftest import http_client
from tests.factories import make_option
from tests.orders_client import act, order_body, place, stock_and_ledger

BUYERS = 300
UNITS = 50
# Strategies that keep the remaining stock in option.stock at all times; the others (the
# Redis counter) write it back periodically, and their own suite checks that write-back.
DB_IS_LIVE = {"db", "redlock"}


@pytest.fixture(params=sorted(STOCK_STRATEGIES))
async def shop(
    request: pytest.FixtureRequest, clean: Container, settings: Settings
) -> AsyncIterator[Container]:
    """A container whose stock port is the strategy under test (same database and Redis)."""
    built = Container.build(
        msgspec.structs.replace(
            settings,
            stock_strategy=request.param,
            database_pool_size=20,
            database_max_overflow=20,
        )
    )
    try:
        yield built
    finally:
        await built.close()


async def buyers(container: Container, count: int) -> list[dict[str, str]]:
    """``count`` real users in one INSERT, each with a bearer header."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with container.engine.begin() as conn:
        await conn.execute(
            insert(UserRow),
            [
                {"id": i, "email": f"{i.hex}@race.test", "password_hash": "x", "name": "Buyer"}
                for i in ids
            ],
        )
    headers = []
    for user_id in ids:
        token, _ = container.access_tokens.issue(Principal(user_id=user_id, role=Role.CUSTOMER))
        headers.append({"Authorization": f"Bearer {token}"})
    return headers


async def rush(
    client: httpx.AsyncClient, crowd: list[dict[str, str]], option_id: int
) -> list[httpx.Response]:
    results = await asyncio.gather(
        *(place(client, headers, order_body((option_id, 1))) for headers in crowd),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    return [r for r in results if isinstance(r, httpx.Response)]


def tally(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def assert_ledger_balanced(container: Container, option_id: int, *, left: int) -> None:
    stock, ledger = await stock_and_ledger(container, option_id)
    assert (await container.stock.available([option_id]))[option_id] == ledger == left
    if container.stock.name in DB_IS_LIVE:
        assert stock == ledger


@pytest.mark.slow
async def test_exactly_the_stock_sells_and_cancelled_units_sell_again(shop: Container) -> None:
    option_id = await make_option(shop, stock=UNITS, price=100)
    crowd = await buyers(shop, BUYERS)
    async with http_client(create_app(shop)) as client:
        first = await rush(client, crowd, option_id)
        assert tally(first) == {201: UNITS, 409: BUYERS - UNITS}
        refusals = [r.json() for r in first if r.status_code == 409]
        assert all(body["extra"]["option_id"] == option_id for body in refusals)
        assert all("sold out" in body["detail"] for body in refusals)
        await assert_ledger_balanced(shop, option_id, left=0)

        winners = [
            (h, r.json()["id"]) for h, r in zip(crowd, first, strict=True) if r.status_code == 201
        ]
        cancels = await asyncio.gather(
            *(act(client, headers, order_id, "cancel") for headers, order_id in winners[:10])
        )
        assert tally(cancels) == {200: 10}
        await assert_ledger_balanced(shop, option_id, left=10)

        losers = [h for h, r in zip(crowd, first, strict=True) if r.status_code == 409]
        second = await rush(client, losers, option_id)
        assert tally(second) == {201: 10, 409: len(losers) - 10}
        await assert_ledger_balanced(shop, option_id, left=0)

"""Popularity: 2 × units ordered in live orders + 1 × wishes of the last 7 days, recomputed by
a SAQ job, stored on the product (sort=popular) and published to Redis (/products/popular).

The seed counted cancelled orders and order lines; here a cancelled or expired order counts
for nothing and a line of five units counts five times.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest
from saq.types import Context
from sqlalchemy import insert, select, update

from shop.adapters.db.tables import ProductRow, WishRow
from shop.adapters.redis.popularity import DEFAULT_KEY
from shop.bootstrap import Container
from shop.domain.catalog.model import PopularityWeights
from shop.domain.catalog.services import refresh_popularity
from shop.domain.identity.model import Role
from shop.entrypoints.workers import cron_jobs, every, refresh_popularity_job
from tests.conftest import bearer
from tests.factories import insert_order_rows, make_option, make_product, make_user
from tests.jobs import job_context


@dataclass
class Item:
    product: int
    option: int
    second_option: int


async def _item(container: Container, name: str) -> Item:
    product = await make_product(container, name=name)
    return Item(
        product=product,
        option=await make_option(container, stock=100, product_id=product),
        second_option=await make_option(container, stock=100, product_id=product),
    )


async def _wish(container: Container, product_id: int, *, days_ago: float = 0) -> None:
    user_id, _ = await make_user(container)
    created_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days_ago)
    async with container.engine.begin() as conn:
        await conn.execute(
            insert(WishRow).values(user_id=user_id, product_id=product_id, created_at=created_at)
        )


async def _known_demand(container: Container) -> dict[str, Item]:
    """Orders and wishes whose scores are worked out by hand below."""
    items = {name: await _item(container, name) for name in "ABCDEF"}
    a, b, c, d, e, f = (items[name] for name in "ABCDEF")
    # A: 3 live units over two lines of one order (6); a cancelled order does not count;
    #    one recent wish (1). Total 7.
    await insert_order_rows(
        container, status="paid", lines=[(a.option, a.product, 2), (a.second_option, a.product, 1)]
    )
    await insert_order_rows(container, status="cancelled", lines=[(a.option, a.product, 10)])
    await _wish(container, a.product)
    # B: 2 units shipping (4); an expired order of 5 does not count. Total 4.
    await insert_order_rows(container, status="shipping", lines=[(b.option, b.product, 2)])
    await insert_order_rows(container, status="expired", lines=[(b.option, b.product, 5)])
    # C: one line of 5 units (10): units, not lines. Total 10.
    await insert_order_rows(container, status="delivered", lines=[(c.option, c.product, 5)])
    # D: three orders of one unit each, in other live states (6). Total 6.
    for status in ("pending_payment", "paid", "refunded"):
        await insert_order_rows(container, status=status, lines=[(d.option, d.product, 1)])
    # E: three wishes this week (3); two wishes older than the window do not count. Total 3.
    for _ in range(3):
        await _wish(container, e.product, days_ago=1)
    for _ in range(2):
        await _wish(container, e.product, days_ago=8)
    # F: only released orders and an old wish. Total 0.
    await insert_order_rows(container, status="cancelled", lines=[(f.option, f.product, 4)])
    await insert_order_rows(container, status="expired", lines=[(f.option, f.product, 4)])
    await _wish(container, f.product, days_ago=30)
    return items


@pytest.fixture
async def ctx(clean: Container) -> AsyncIterator[Context]:
    async with job_context(clean) as context:
        yield context


EXPECTED = {"C": 10, "A": 7, "D": 6, "B": 4, "E": 3, "F": 0}


async def _scores(container: Container) -> dict[str, int]:
    async with container.engine.connect() as conn:
        rows = await conn.execute(select(ProductRow.name, ProductRow.popularity))
        return {row.name: row.popularity for row in rows}


async def test_the_job_scores_live_units_and_recent_wishes(
    client: httpx.AsyncClient, clean: Container, ctx: Context
) -> None:
    await _known_demand(clean)

    changed = await refresh_popularity_job(ctx)

    assert await _scores(clean) == EXPECTED
    assert changed == 5  # every product but F moved from 0
    listed = (await client.get("/api/products?sort=popular")).json()["items"]
    assert [(item["name"], item["popularity"]) for item in listed] == list(EXPECTED.items())
    again = await refresh_popularity_job(ctx)
    assert again == 0, "an unchanged score is not rewritten"


async def test_the_top_list_is_served_from_redis_after_a_refresh(
    client: httpx.AsyncClient, clean: Container, ctx: Context
) -> None:
    items = await _known_demand(clean)
    await refresh_popularity_job(ctx)
    assert await clean.redis.zcard(DEFAULT_KEY) == 6

    # Change the database behind the list's back: the endpoint must not consult it.
    async with clean.engine.begin() as conn:
        await conn.execute(update(ProductRow).values(popularity=0))

    response = await client.get("/api/products/popular?limit=3")

    assert response.status_code == 200
    top = response.json()["items"]
    assert [(item["name"], item["popularity"]) for item in top] == [("C", 10), ("A", 7), ("D", 6)]
    assert top[0]["id"] == items["C"].product


async def test_before_the_first_refresh_the_top_list_comes_from_postgresql(
    client: httpx.AsyncClient, clean: Container
) -> None:
    low = await make_product(clean, name="low")
    high = await make_product(clean, name="high")
    async with clean.engine.begin() as conn:
        await conn.execute(update(ProductRow).where(ProductRow.id == high).values(popularity=3))
    response = await client.get("/api/products/popular")
    assert [item["id"] for item in response.json()["items"]] == [high, low]
    assert not await clean.redis.exists(DEFAULT_KEY)


async def test_ties_in_the_top_list_are_broken_by_id_like_the_listing(
    client: httpx.AsyncClient, clean: Container, ctx: Context
) -> None:
    ids = [await make_product(clean, name=f"p{n}") for n in range(12)]  # ids 1..12: "9" > "10"
    await refresh_popularity_job(ctx)
    published = (await client.get("/api/products/popular?limit=12")).json()["items"]
    listed = (await client.get("/api/products?sort=popular&limit=12")).json()["items"]
    assert [item["id"] for item in published] == sorted(ids, reverse=True)
    assert published == listed


async def test_a_deleted_product_leaves_the_published_list(
    client: httpx.AsyncClient, clean: Container, ctx: Context
) -> None:
    items = await _known_demand(clean)
    await refresh_popularity_job(ctx)
    response = await client.delete(
        f"/api/admin/products/{items['E'].product}", headers=bearer(clean, role=Role.ADMIN)
    )
    assert response.status_code == 204
    names = [i["name"] for i in (await client.get("/api/products/popular")).json()["items"]]
    assert names == ["C", "A", "D", "B", "F"]


async def test_weights_and_window_are_configurable(clean: Container) -> None:
    await _known_demand(clean)
    weights = PopularityWeights(units=1, wish=10, wish_window_seconds=10 * 86_400)
    catalog = clean.catalog

    await refresh_popularity(
        catalog.scores, catalog.reads, catalog.ranking, weights=weights, list_size=2
    )

    # E now has 5 wishes in a 10-day window (50); A: 3 units + 1 wish (13); F: 30 days is out.
    assert await _scores(clean) == {"A": 13, "B": 2, "C": 5, "D": 3, "E": 50, "F": 0}
    assert await clean.redis.zcard(DEFAULT_KEY) == 2


async def test_concurrent_refreshes_do_not_collide(clean: Container, ctx: Context) -> None:
    await _known_demand(clean)
    results = await asyncio.gather(*(refresh_popularity_job(ctx) for _ in range(4)))
    assert all(result is None or result >= 0 for result in results)
    assert await _scores(clean) == EXPECTED


def test_the_job_runs_on_the_configured_interval(clean: Container) -> None:
    settings = msgspec.structs.replace(clean.settings, popularity_refresh_interval=30)
    crons = {job.function: job.cron for job in cron_jobs(settings)}
    assert crons[refresh_popularity_job] == "* * * * * */30"
    assert every(300) == "*/5 * * * *"
    assert every(7_200) == "0 */2 * * *"

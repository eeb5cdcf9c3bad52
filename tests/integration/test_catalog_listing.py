"""The listing adapter's two plans (walk the sort index / gather a small category's products
first) must return exactly the same pages; only their cost differs."""

from __future__ import annotations

import datetime
import random

import pytest

from shop.adapters.db.catalog_listing import SqlCatalogReads
from shop.bootstrap import Container
from shop.domain.catalog.model import ListingQuery, NewestAfter, PopularAfter, Sort
from tests.factories import make_category, make_listed_product

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@pytest.mark.parametrize("sort", list(Sort))
async def test_walking_and_gathering_give_the_same_pages(clean: Container, sort: Sort) -> None:
    rng = random.Random(5)
    root = await make_category(clean, "Root")
    child = await make_category(clean, "Child", parent_id=root)
    grandchild = await make_category(clean, "Grandchild", parent_id=child)
    other = await make_category(clean, "Other")
    categories = [root, child, grandchild, other]
    for _ in range(60):
        await make_listed_product(
            clean,
            category_ids=rng.sample(categories, rng.randint(1, 2)),
            created_at=T0 + datetime.timedelta(hours=rng.randint(0, 10)),
            popularity=rng.randint(0, 4),
        )
    walk = SqlCatalogReads(clean.engine, dense_links=1)
    gather = SqlCatalogReads(clean.engine, dense_links=10**9)

    for category_id in (root, child, grandchild, other):
        pages: dict[str, list[list[int]]] = {"walk": [], "gather": []}
        for name, reads in (("walk", walk), ("gather", gather)):
            after: NewestAfter | PopularAfter | None = None
            while True:
                rows = await reads.listing(
                    ListingQuery(sort=sort, limit=7, category_id=category_id, after=after)
                )
                pages[name].append([row.id for row in rows[:7]])
                if len(rows) <= 7:
                    break
                last = rows[6]
                after = (
                    NewestAfter(last.created_at, last.id)
                    if sort is Sort.NEWEST
                    else PopularAfter(last.popularity, last.id)
                )
        assert pages["walk"] == pages["gather"], category_id
        assert sum(len(page) for page in pages["walk"]) > 0


async def test_an_unknown_category_lists_nothing(clean: Container) -> None:
    reads = SqlCatalogReads(clean.engine)
    assert await reads.listing(ListingQuery(sort=Sort.NEWEST, limit=5, category_id=42)) == []

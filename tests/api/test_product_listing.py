"""Listing products: categories include their descendants, two orders, keyset pages that
neither repeat nor skip (the seed's ``<=`` cursor repeated the boundary item every page)."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from shop.bootstrap import Container
from tests.factories import make_category, make_listed_product

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


async def _walk(
    client: httpx.AsyncClient,
    query: str,
    between: Callable[[], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """Every page of a listing, following next_cursor; ``between`` runs after each page."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        url = f"/api/products?{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        if between is not None:
            await between()


async def test_a_category_lists_its_descendants_once_each(
    client: httpx.AsyncClient, clean: Container
) -> None:
    clothes = await make_category(clean, "Clothes")
    shirts = await make_category(clean, "Shirts", parent_id=clothes)
    polos = await make_category(clean, "Polos", parent_id=shirts)
    books = await make_category(clean, "Books")
    in_root = await make_listed_product(clean, category_ids=[clothes])
    in_leaf = await make_listed_product(clean, category_ids=[polos])
    in_two = await make_listed_product(clean, category_ids=[shirts, polos])
    await make_listed_product(clean, category_ids=[books])
    await make_listed_product(clean)

    def ids(response: httpx.Response) -> set[int]:
        return {item["id"] for item in response.json()["items"]}

    everything = await client.get(f"/api/products?category_id={clothes}")
    assert len(everything.json()["items"]) == 3
    assert ids(everything) == {in_root, in_leaf, in_two}
    assert ids(await client.get(f"/api/products?category_id={shirts}")) == {in_leaf, in_two}
    assert ids(await client.get(f"/api/products?category_id={polos}")) == {in_leaf, in_two}
    assert len((await client.get("/api/products")).json()["items"]) == 5


async def test_newest_first_breaks_ties_by_id(client: httpx.AsyncClient, clean: Container) -> None:
    old = await make_listed_product(clean, created_at=T0)
    tie_a = await make_listed_product(clean, created_at=T0 + datetime.timedelta(days=1))
    tie_b = await make_listed_product(clean, created_at=T0 + datetime.timedelta(days=1))
    new = await make_listed_product(clean, created_at=T0 + datetime.timedelta(days=2))

    response = await client.get("/api/products?sort=newest")

    assert [item["id"] for item in response.json()["items"]] == [new, tie_b, tie_a, old]


async def test_most_popular_first_breaks_ties_by_id(
    client: httpx.AsyncClient, clean: Container
) -> None:
    low = await make_listed_product(clean, popularity=1)
    tie_a = await make_listed_product(clean, popularity=5)
    tie_b = await make_listed_product(clean, popularity=5)
    high = await make_listed_product(clean, popularity=9)

    response = await client.get("/api/products?sort=popular")

    items = response.json()["items"]
    assert [item["id"] for item in items] == [high, tie_b, tie_a, low]
    assert [item["popularity"] for item in items] == [9, 5, 5, 1]


@pytest.mark.parametrize("sort", ["newest", "popular"])
async def test_walking_every_page_while_products_arrive_repeats_and_skips_nothing(
    client: httpx.AsyncClient, clean: Container, sort: str
) -> None:
    root = await make_category(clean, "Root")
    child = await make_category(clean, "Child", parent_id=root)
    expected = []
    for n in range(47):
        # Many equal keys (timestamps and scores), so that page boundaries fall inside ties.
        expected.append(
            await make_listed_product(
                clean,
                category_ids=[root if n % 2 else child],
                created_at=T0 + datetime.timedelta(hours=n // 5),
                popularity=n // 4,
            )
        )
    await make_listed_product(clean, created_at=T0)  # outside the category

    async def newcomer() -> None:
        await make_listed_product(clean, category_ids=[child])

    walked = await _walk(client, f"sort={sort}&limit=5&category_id={root}", between=newcomer)

    ids = [item["id"] for item in walked]
    assert len(ids) == len(set(ids)), "an item was repeated"
    assert set(expected) <= set(ids), "an item was skipped"
    key = "created_at" if sort == "newest" else "popularity"
    keys = [(item[key], item["id"]) for item in walked if item["id"] in set(expected)]
    assert keys == sorted(keys, reverse=True)


async def test_the_last_page_has_no_cursor_even_on_an_exact_multiple(
    client: httpx.AsyncClient, clean: Container
) -> None:
    for _ in range(6):
        await make_listed_product(clean)
    first = (await client.get("/api/products?limit=3")).json()
    second = (await client.get(f"/api/products?limit=3&cursor={first['next_cursor']}")).json()
    assert len(first["items"]) == len(second["items"]) == 3
    assert second["next_cursor"] is None
    empty = (await client.get("/api/products?category_id=1")).status_code
    assert empty == 404


def _cursor(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        _cursor("not json"),
        _cursor('{"a": 1}'),
        _cursor('["newest", 1]'),
        _cursor('["newest", "x", 1]'),
        _cursor('["newest", 1.5, 1]'),
        _cursor('["newest", 99999999999999999999999, 1]'),
        _cursor('["newest", 1, 0]'),
        _cursor('["popular", 1, 1]'),
        "A" * 500,
    ],
)
async def test_a_cursor_this_server_did_not_issue_is_a_400(
    client: httpx.AsyncClient, cursor: str
) -> None:
    response = await client.get(f"/api/products?sort=newest&cursor={cursor}")
    assert response.status_code == 400
    body = response.json()
    assert body["status_code"] == 400
    assert "cursor" in body["detail"]
    assert body["extra"] == {"parameter": "cursor"}


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "sort=cheapest"])
async def test_out_of_range_limits_and_unknown_sorts_are_422(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await client.get(f"/api/products?{query}")
    assert response.status_code == 422
    assert response.json()["status_code"] == 422
    assert response.json()["extra"], "the error names the offending parameter"


async def test_listing_needs_no_token(client: httpx.AsyncClient, clean: Container) -> None:
    product_id = await make_listed_product(clean)
    for path in ("/api/products", "/api/products/popular", f"/api/products/{product_id}"):
        assert (await client.get(path)).status_code == 200, path
    assert (await client.get("/api/categories")).status_code == 200

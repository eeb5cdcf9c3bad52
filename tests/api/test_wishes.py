"""The wish list over HTTP: idempotent add and remove, newest-first pages, a cap, isolation."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from shop.adapters.db.tables import WishRow
from shop.bootstrap import Container
from shop.domain.identity.model import Role
from shop.entrypoints.http.app import create_app
from tests.conftest import bearer, http_client, with_settings
from tests.factories import make_option, make_product, make_user


async def _wish_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> list[int]:
    response = await client.get("/api/wishes", headers=headers)
    assert response.status_code == 200
    return [item["product_id"] for item in response.json()["items"]]


async def test_adding_twice_is_one_wish_201_then_200(
    client: httpx.AsyncClient, clean: Container
) -> None:
    product_id = await make_product(clean)
    _, me = await make_user(clean)

    first = await client.put(f"/api/wishes/{product_id}", headers=me)
    second = await client.put(f"/api/wishes/{product_id}", headers=me)

    assert first.status_code == 201
    assert second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["product_id"] == product_id
    assert await _wish_ids(client, me) == [product_id]


async def test_removing_is_idempotent(client: httpx.AsyncClient, clean: Container) -> None:
    product_id = await make_product(clean)
    _, me = await make_user(clean)
    await client.put(f"/api/wishes/{product_id}", headers=me)

    first = await client.delete(f"/api/wishes/{product_id}", headers=me)
    second = await client.delete(f"/api/wishes/{product_id}", headers=me)
    never_there = await client.delete("/api/wishes/424242", headers=me)

    assert (first.status_code, second.status_code, never_there.status_code) == (204, 204, 204)
    assert await _wish_ids(client, me) == []


async def test_the_list_summarises_each_product_newest_first(
    client: httpx.AsyncClient, clean: Container
) -> None:
    in_stock = await make_product(clean, name="In stock", price=1_500)
    await make_option(clean, stock=0, product_id=in_stock)
    await make_option(clean, stock=2, product_id=in_stock)
    sold_out = await make_product(clean, name="Sold out", price=900)
    await make_option(clean, stock=0, product_id=sold_out)
    no_options = await make_product(clean, name="No options")
    _, me = await make_user(clean)
    for product_id in (in_stock, sold_out, no_options):
        await client.put(f"/api/wishes/{product_id}", headers=me)

    items = (await client.get("/api/wishes", headers=me)).json()["items"]

    assert [(i["product_id"], i["name"], i["price"], i["available"]) for i in items] == [
        (no_options, "No options", 1_000, False),
        (sold_out, "Sold out", 900, False),
        (in_stock, "In stock", 1_500, True),
    ]
    assert items[0]["wished_at"] >= items[1]["wished_at"] >= items[2]["wished_at"]


async def test_pages_cover_the_list_without_repeats(
    client: httpx.AsyncClient, clean: Container
) -> None:
    _, me = await make_user(clean)
    products = [await make_product(clean, name=f"p{n}") for n in range(11)]
    for product_id in products:
        assert (await client.put(f"/api/wishes/{product_id}", headers=me)).status_code == 201

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = "limit=4" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(f"/api/wishes?{query}", headers=me)).json()
        seen.extend(item["product_id"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # A wish added mid-walk is newer than the cursor: it cannot shift later pages.
        await client.put(f"/api/wishes/{await make_product(clean)}", headers=me)

    assert pages == 3
    assert seen == list(reversed(products))


@pytest.mark.parametrize("query", ["cursor=garbage", "limit=0", "limit=101"])
async def test_bad_cursors_and_limits_are_4xx_json(
    client: httpx.AsyncClient, clean: Container, query: str
) -> None:
    _, me = await make_user(clean)
    response = await client.get(f"/api/wishes?{query}", headers=me)
    assert response.status_code in (400, 422)
    assert response.json()["status_code"] == response.status_code


async def test_a_product_cursor_is_not_a_wish_cursor(
    client: httpx.AsyncClient, clean: Container
) -> None:
    for _ in range(3):
        await make_product(clean)
    product_cursor = (await client.get("/api/products?limit=1")).json()["next_cursor"]
    _, me = await make_user(clean)
    response = await client.get(f"/api/wishes?cursor={product_cursor}", headers=me)
    assert response.status_code == 400


async def test_users_only_ever_see_and_change_their_own_list(
    client: httpx.AsyncClient, clean: Container
) -> None:
    mine, theirs = await make_product(clean), await make_product(clean)
    _, me = await make_user(clean)
    _, other = await make_user(clean)
    await client.put(f"/api/wishes/{mine}", headers=me)
    await client.put(f"/api/wishes/{theirs}", headers=other)
    await client.put(f"/api/wishes/{mine}", headers=other)

    await client.delete(f"/api/wishes/{mine}", headers=other)

    assert await _wish_ids(client, me) == [mine]
    assert await _wish_ids(client, other) == [theirs]


async def test_the_wishes_of_a_deleted_product_disappear(
    client: httpx.AsyncClient, clean: Container
) -> None:
    doomed, kept = await make_product(clean), await make_product(clean)
    _, me = await make_user(clean)
    _, other = await make_user(clean)
    for headers in (me, other):
        await client.put(f"/api/wishes/{doomed}", headers=headers)
    await client.put(f"/api/wishes/{kept}", headers=me)

    response = await client.delete(
        f"/api/admin/products/{doomed}", headers=bearer(clean, role=Role.ADMIN)
    )

    assert response.status_code == 204
    assert await _wish_ids(client, me) == [kept]
    assert await _wish_ids(client, other) == []
    async with clean.engine.connect() as conn:
        left = await conn.scalar(select(func.count()).select_from(WishRow))
    assert left == 1


async def test_an_unknown_product_is_404(client: httpx.AsyncClient, clean: Container) -> None:
    _, me = await make_user(clean)
    response = await client.put("/api/wishes/424242", headers=me)
    assert response.status_code == 404
    assert response.json()["detail"] == "product 424242 does not exist"


async def test_the_cap_holds_even_under_parallel_adds(clean: Container) -> None:
    capped = with_settings(clean, max_wishes_per_user=3)
    products = [await make_product(clean) for _ in range(8)]
    _, me = await make_user(clean)
    async with http_client(create_app(capped)) as client:
        responses = await asyncio.gather(
            *(client.put(f"/api/wishes/{product_id}", headers=me) for product_id in products)
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201, 201, 201, 409, 409, 409, 409, 409]
        refused = next(r for r in responses if r.status_code == 409)
        assert refused.json()["extra"] == {"cap": 3}
        wished = await _wish_ids(client, me)
        assert len(wished) == 3
        again = await client.put(f"/api/wishes/{wished[0]}", headers=me)
        assert again.status_code == 200, "re-adding a wish at the cap adds nothing"


async def test_wishes_need_a_token(client: httpx.AsyncClient, clean: Container) -> None:
    product_id = await make_product(clean)
    for method in ("GET", "PUT", "DELETE"):
        path = "/api/wishes" if method == "GET" else f"/api/wishes/{product_id}"
        response = await client.request(method, path)
        assert response.status_code == 401, method
        assert response.json()["status_code"] == 401

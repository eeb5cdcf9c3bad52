"""The category tree over HTTP: public reads, admin-only writes, no cycles, safe deletes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from tests.conftest import bearer
from tests.factories import make_category, make_listed_product


@pytest.fixture
def admin(clean: Container) -> dict[str, str]:
    return bearer(clean, role=Role.ADMIN)


async def _create(
    client: httpx.AsyncClient, admin: dict[str, str], name: str, **fields: Any
) -> int:
    response = await client.post(
        "/api/admin/categories", json={"name": name, **fields}, headers=admin
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _shape(nodes: list[dict[str, Any]]) -> list[Any]:
    return [(node["name"], _shape(node["children"])) for node in nodes]


async def test_the_tree_is_public_and_nested_in_position_order(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    clothes = await _create(client, admin, "Clothes", position=2)
    await _create(client, admin, "Books", position=1)
    shirts = await _create(client, admin, "Shirts", parent_id=clothes, position=1)
    await _create(client, admin, "Trousers", parent_id=clothes, position=0)
    await _create(client, admin, "Polo", parent_id=shirts)

    response = await client.get("/api/categories")

    assert response.status_code == 200
    assert _shape(response.json()) == [
        ("Books", []),
        ("Clothes", [("Trousers", []), ("Shirts", [("Polo", [])])]),
    ]


async def test_a_new_category_under_an_unknown_parent_is_404(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/api/admin/categories", json={"name": "Orphan", "parent_id": 999}, headers=admin
    )
    assert response.status_code == 404
    assert response.json()["extra"] == {"parent_id": 999}


async def test_rename_reorder_and_move_to_the_top_level(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    root = await _create(client, admin, "Root")
    child = await _create(client, admin, "Child", parent_id=root)

    renamed = await client.patch(
        f"/api/admin/categories/{child}", json={"name": "Renamed", "position": 5}, headers=admin
    )
    assert renamed.json() == {"id": child, "name": "Renamed", "parent_id": root, "position": 5}

    moved = await client.patch(
        f"/api/admin/categories/{child}", json={"parent_id": None}, headers=admin
    )
    assert moved.status_code == 200
    assert moved.json()["parent_id"] is None
    assert moved.json()["name"] == "Renamed"


async def test_a_category_cannot_move_under_its_own_descendant(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    top = await _create(client, admin, "Top")
    middle = await _create(client, admin, "Middle", parent_id=top)
    bottom = await _create(client, admin, "Bottom", parent_id=middle)

    for new_parent in (bottom, top):
        response = await client.patch(
            f"/api/admin/categories/{top}", json={"parent_id": new_parent}, headers=admin
        )
        assert response.status_code == 409, new_parent
    assert _shape((await client.get("/api/categories")).json()) == [
        ("Top", [("Middle", [("Bottom", [])])])
    ]


async def test_two_crossing_moves_at_once_cannot_make_a_cycle(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for _ in range(5):
        a = await _create(client, admin, "A")
        b = await _create(client, admin, "B")
        under_b, under_a = await asyncio.gather(
            client.patch(f"/api/admin/categories/{a}", json={"parent_id": b}, headers=admin),
            client.patch(f"/api/admin/categories/{b}", json={"parent_id": a}, headers=admin),
        )
        assert sorted([under_b.status_code, under_a.status_code]) == [200, 409]
        for category in (a, b):
            await client.delete(f"/api/admin/categories/{category}?cascade=true", headers=admin)


async def test_unknown_category_is_404_for_update_and_delete(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    assert (
        await client.patch("/api/admin/categories/999", json={"name": "x"}, headers=admin)
    ).status_code == 404
    assert (await client.delete("/api/admin/categories/999", headers=admin)).status_code == 404


async def test_unknown_fields_are_refused(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await client.post(
        "/api/admin/categories", json={"name": "X", "parent": 1}, headers=admin
    )
    assert response.status_code in (400, 422)
    assert response.json()["status_code"] == response.status_code


async def test_an_empty_category_is_deleted(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    category = await _create(client, admin, "Empty")
    response = await client.delete(f"/api/admin/categories/{category}", headers=admin)
    assert response.status_code == 204
    assert (await client.get("/api/categories")).json() == []


async def test_deleting_a_category_with_children_or_products_needs_a_mode(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    parent = await _create(client, admin, "Parent")
    await _create(client, admin, "Child", parent_id=parent)
    stocked = await _create(client, admin, "Stocked")
    await make_listed_product(clean, category_ids=[stocked])

    with_child = await client.delete(f"/api/admin/categories/{parent}", headers=admin)
    with_product = await client.delete(f"/api/admin/categories/{stocked}", headers=admin)

    assert with_child.status_code == 409
    assert with_child.json()["extra"] == {"children": 1, "products": 0}
    assert with_product.status_code == 409
    assert with_product.json()["extra"] == {"children": 0, "products": 1}
    assert len((await client.get("/api/categories")).json()) == 2


async def test_cascade_deletes_the_subtree_and_keeps_the_products(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    keep = await _create(client, admin, "Keep")
    doomed = await _create(client, admin, "Doomed")
    child = await _create(client, admin, "Doomed child", parent_id=doomed)
    product = await make_listed_product(clean, category_ids=[child, keep])

    response = await client.delete(f"/api/admin/categories/{doomed}?cascade=true", headers=admin)

    assert response.status_code == 204
    assert _shape((await client.get("/api/categories")).json()) == [("Keep", [])]
    detail = (await client.get(f"/api/products/{product}")).json()
    assert [c["id"] for c in detail["categories"]] == [keep]


async def test_move_to_hands_children_and_products_over(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    old = await _create(client, admin, "Old")
    new = await _create(client, admin, "New")
    await _create(client, admin, "Child", parent_id=old)
    only_old = await make_listed_product(clean, category_ids=[old])
    both = await make_listed_product(clean, category_ids=[old, new])

    response = await client.delete(f"/api/admin/categories/{old}?move_to={new}", headers=admin)

    assert response.status_code == 204
    assert _shape((await client.get("/api/categories")).json()) == [("New", [("Child", [])])]
    listed = await client.get(f"/api/products?category_id={new}")
    assert sorted(item["id"] for item in listed.json()["items"]) == sorted([only_old, both])


async def test_move_to_inside_the_deleted_subtree_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    old = await _create(client, admin, "Old")
    child = await _create(client, admin, "Child", parent_id=old)
    inside = await client.delete(f"/api/admin/categories/{old}?move_to={child}", headers=admin)
    unknown = await client.delete(f"/api/admin/categories/{old}?move_to=999", headers=admin)
    both = await client.delete(
        f"/api/admin/categories/{old}?move_to={child}&cascade=true", headers=admin
    )
    assert (inside.status_code, unknown.status_code, both.status_code) == (409, 404, 409)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/admin/categories", {"name": "X"}),
        ("PATCH", "/api/admin/categories/1", {"name": "X"}),
        ("DELETE", "/api/admin/categories/1", None),
    ],
)
async def test_category_writes_are_for_admins_only(
    client: httpx.AsyncClient, clean: Container, method: str, path: str, body: Any
) -> None:
    await make_category(clean, "Existing")
    anonymous = await client.request(method, path, json=body)
    customer = await client.request(method, path, json=body, headers=bearer(clean))
    assert anonymous.status_code == 401
    assert customer.status_code == 403
    assert customer.json()["status_code"] == 403

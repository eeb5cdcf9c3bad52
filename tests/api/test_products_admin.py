"""Registering and changing products over HTTP: stock goes on sale through the stock port."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from shop.adapters.db.tables import OptionRow
from shop.bootstrap import Container
from shop.domain.identity.model import Role
from tests.conftest import bearer
from tests.factories import insert_order_rows, make_category


@pytest.fixture
def admin(clean: Container) -> dict[str, str]:
    return bearer(clean, role=Role.ADMIN)


def _product(category_ids: list[int], **fields: Any) -> dict[str, Any]:
    return {
        "name": "Linen shirt",
        "description": "Breathable.",
        "price": 4_900,
        "category_ids": category_ids,
        "options": [
            {"name": "white / M", "stock": 10},
            {"name": "white / L", "stock": 0, "price": 5_400},
        ],
        "images": ["https://img.example/1.jpg", "https://img.example/2.jpg"],
        **fields,
    }


async def _restock(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    option_id: int,
    units: int,
    *,
    key: str | None = None,
) -> httpx.Response:
    return await client.post(
        f"/api/admin/options/{option_id}/restock",
        json={"units": units},
        headers={**admin, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def _stock_row(container: Container, option_id: int) -> tuple[int, int]:
    async with container.engine.connect() as conn:
        row = (
            await conn.execute(
                select(OptionRow.stock_total, OptionRow.stock).where(OptionRow.id == option_id)
            )
        ).one()
    return int(row.stock_total), int(row.stock)


async def _register(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/api/admin/products", json=body, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_registration_puts_each_options_stock_on_sale(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    shirts = await make_category(clean, "Shirts")

    created = await _register(client, admin, _product([shirts]))

    assert created["name"] == "Linen shirt"
    assert created["categories"] == [{"id": shirts, "name": "Shirts"}]
    assert [
        (o["name"], o["price"], o["stock_total"], o["available"]) for o in created["options"]
    ] == [
        ("white / M", 4_900, 10, 10),
        ("white / L", 5_400, 0, 0),
    ]
    assert [i["url"] for i in created["images"]] == [
        "https://img.example/1.jpg",
        "https://img.example/2.jpg",
    ]
    option_ids = [o["id"] for o in created["options"]]
    assert await clean.stock.available(option_ids) == {option_ids[0]: 10, option_ids[1]: 0}
    detail = await client.get(f"/api/products/{created['id']}")
    assert detail.status_code == 200
    assert detail.json() == created


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"category_ids": [999]}, 404),
        ({"options": []}, 422),
        ({"price": -1}, 422),
        ({"name": ""}, 422),
        ({"images": ["ftp://nope"]}, 422),
        ({"options": [{"name": "a", "stock": 1}, {"name": "a", "stock": 2}]}, 409),
        ({"options": [{"name": "a", "stock": -1}]}, 422),
        ({"colour": "red"}, 422),
    ],
)
async def test_invalid_registrations_are_refused_and_write_nothing(
    client: httpx.AsyncClient,
    clean: Container,
    admin: dict[str, str],
    change: dict[str, Any],
    status: int,
) -> None:
    shirts = await make_category(clean, "Shirts")
    response = await client.post(
        "/api/admin/products", json=_product([shirts]) | change, headers=admin
    )
    assert response.status_code == status, response.text
    assert response.json()["status_code"] == status
    assert (await client.get("/api/products")).json()["items"] == []


async def test_update_changes_fields_and_replaces_categories(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    old = await make_category(clean, "Old")
    new = await make_category(clean, "New")
    created = await _register(client, admin, _product([old]))

    response = await client.patch(
        f"/api/admin/products/{created['id']}",
        json={"price": 3_900, "category_ids": [new]},
        headers=admin,
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["price"]) == ("Linen shirt", 3_900)
    assert body["categories"] == [{"id": new, "name": "New"}]
    assert body["updated_at"] >= created["updated_at"]
    missing = await client.patch("/api/admin/products/999", json={"price": 1}, headers=admin)
    assert missing.status_code == 404


async def test_restock_raises_the_units_on_sale_at_once(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    created = await _register(client, admin, _product([]))
    option_id = created["options"][1]["id"]

    response = await _restock(client, admin, option_id, 7)

    assert response.status_code == 200
    assert response.json()["stock_total"] == 7
    assert response.json()["available"] == 7
    detail = (await client.get(f"/api/products/{created['id']}")).json()
    assert [o["available"] for o in detail["options"]] == [10, 7]
    async with clean.engine.connect() as conn:
        row = (
            await conn.execute(
                select(OptionRow.stock_total, OptionRow.stock).where(OptionRow.id == option_id)
            )
        ).one()
    assert tuple(row) == (7, 7)


async def test_restock_refuses_unknown_options_and_non_positive_units(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    created = await _register(client, admin, _product([]))
    option_id = created["options"][0]["id"]
    unknown = await _restock(client, admin, 999, 1)
    zero = await _restock(client, admin, option_id, 0)
    assert (unknown.status_code, zero.status_code) == (404, 422)


async def test_a_restock_retried_with_its_key_puts_the_units_on_sale_once(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    created = await _register(client, admin, _product([]))
    option_id = created["options"][0]["id"]

    first = await _restock(client, admin, option_id, 5, key="restock-2026-12-02")
    again = await _restock(client, admin, option_id, 5, key="restock-2026-12-02")

    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == again.json()
    assert (again.json()["stock_total"], again.json()["available"]) == (15, 15)
    assert await _stock_row(clean, option_id) == (15, 15)


async def test_a_restock_key_reused_with_another_body_is_refused(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    created = await _register(client, admin, _product([]))
    first, second = (option["id"] for option in created["options"])
    await _restock(client, admin, first, 5, key="k-1")

    more = await _restock(client, admin, first, 6, key="k-1")
    elsewhere = await _restock(client, admin, second, 5, key="k-1")

    assert (more.status_code, elsewhere.status_code) == (422, 422)
    assert "Idempotency-Key" in more.json()["detail"]
    assert await _stock_row(clean, first) == (15, 15)
    assert await _stock_row(clean, second) == (0, 0)


@pytest.mark.parametrize(
    ("headers", "case"),
    [
        ({}, "missing"),
        ({"Idempotency-Key": ""}, "empty"),
        ({"Idempotency-Key": "   "}, "blank"),
        ({"Idempotency-Key": "k" * 201}, "too long"),
    ],
)
async def test_a_restock_needs_an_idempotency_key(
    client: httpx.AsyncClient,
    clean: Container,
    admin: dict[str, str],
    headers: dict[str, str],
    case: str,
) -> None:
    created = await _register(client, admin, _product([]))
    option_id = created["options"][0]["id"]
    response = await client.post(
        f"/api/admin/options/{option_id}/restock",
        json={"units": 3},
        headers={**admin, **headers},
    )
    assert response.status_code == 422, (case, response.text)
    assert "idempotency" in response.text.lower(), (case, response.text)
    assert await _stock_row(clean, option_id) == (10, 10)


async def test_the_openapi_schema_declares_the_restock_key(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/api/admin/options/{option_id}/restock"]["post"]
    (key,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert (key["in"], key["required"]) == ("header", True)
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, 200)


async def test_options_and_images_can_be_added_later(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    created = await _register(client, admin, _product([]))
    product_id = created["id"]

    option = await client.post(
        f"/api/admin/products/{product_id}/options",
        json={"name": "black / M", "stock": 3},
        headers=admin,
    )
    duplicate = await client.post(
        f"/api/admin/products/{product_id}/options",
        json={"name": "black / M", "stock": 3},
        headers=admin,
    )
    first = await client.post(
        f"/api/admin/products/{product_id}/images",
        json={"url": "https://img.example/0.jpg", "position": -1},
        headers=admin,
    )
    last = await client.post(
        f"/api/admin/products/{product_id}/images",
        json={"url": "https://img.example/3.jpg"},
        headers=admin,
    )

    assert option.status_code == 201
    assert option.json() | {"id": 0} == {
        "id": 0,
        "name": "black / M",
        "price": 4_900,
        "stock_total": 3,
        "available": 3,
    }
    assert duplicate.status_code == 409
    assert (first.status_code, last.status_code) == (201, 201)
    detail = (await client.get(f"/api/products/{product_id}")).json()
    assert [o["name"] for o in detail["options"]] == ["white / M", "white / L", "black / M"]
    assert [i["url"].rsplit("/", 1)[1] for i in detail["images"]] == [
        "0.jpg",
        "1.jpg",
        "2.jpg",
        "3.jpg",
    ]
    for path, body in (
        ("/api/admin/products/999/options", {"name": "x", "stock": 1}),
        ("/api/admin/products/999/images", {"url": "https://img.example/x.jpg"}),
    ):
        assert (await client.post(path, json=body, headers=admin)).status_code == 404


async def test_a_product_is_deleted_unless_it_was_ordered(
    client: httpx.AsyncClient, clean: Container, admin: dict[str, str]
) -> None:
    unsold = await _register(client, admin, _product([]))
    ordered = await _register(client, admin, _product([], name="Ordered"))
    await insert_order_rows(
        clean, status="paid", lines=[(ordered["options"][0]["id"], ordered["id"], 1)]
    )

    gone = await client.delete(f"/api/admin/products/{unsold['id']}", headers=admin)
    kept = await client.delete(f"/api/admin/products/{ordered['id']}", headers=admin)

    assert (gone.status_code, kept.status_code) == (204, 409)
    assert (await client.get(f"/api/products/{unsold['id']}")).status_code == 404
    assert (await client.get(f"/api/products/{ordered['id']}")).status_code == 200
    missing = await client.delete(f"/api/admin/products/{unsold['id']}", headers=admin)
    assert missing.status_code == 404


async def test_unknown_product_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/products/424242")
    assert response.status_code == 404
    assert response.json() == {"status_code": 404, "detail": "product 424242 does not exist"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/admin/products", _product([])),
        ("PATCH", "/api/admin/products/1", {"price": 1}),
        ("DELETE", "/api/admin/products/1", None),
        ("POST", "/api/admin/products/1/options", {"name": "x", "stock": 1}),
        ("POST", "/api/admin/options/1/restock", {"units": 1}),
        ("POST", "/api/admin/products/1/images", {"url": "https://img.example/x.jpg"}),
    ],
)
async def test_product_writes_are_for_admins_only(
    client: httpx.AsyncClient, clean: Container, method: str, path: str, body: Any
) -> None:
    anonymous = await client.request(method, path, json=body)
    customer = await client.request(method, path, json=body, headers=bearer(clean))
    assert anonymous.status_code == 401
    assert customer.status_code == 403

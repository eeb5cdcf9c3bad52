"""Issue 15's requests, each answered with a 4xx JSON error that says what is wrong.

Every one of these used to log a traceback and answer 500 (or 503, or a wrong 401/404).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, insert, select, update

from shop.adapters.db.tables import CategoryRow, OptionRow, RefreshTokenRow, UserRow
from shop.bootstrap import Container
from shop.domain.identity.model import Role
from shop.domain.limits import MAX_CATEGORY_DEPTH, MAX_ID, MAX_INT32, MAX_PRICE
from shop.domain.paging import encode_cursor, micros_of, uuid_key
from tests.conftest import TEST_PASSWORD, make_user
from tests.factories import make_category, make_option, make_product
from tests.orders_client import order_body, place

BIG = 2**63


def _error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["status_code"] == status
    for word in words:
        assert word.lower() in response.text.lower(), (word, body)
    return body


@pytest.fixture
async def admin_headers(clean: Container) -> dict[str, str]:
    _, headers = await make_user(clean, role=Role.ADMIN)
    return headers


@pytest.fixture
async def customer(clean: Container) -> dict[str, str]:
    _, headers = await make_user(clean)
    return headers


# --- ids and numbers beyond int64 ------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/api/products/{BIG}",
        f"/api/products/{MAX_ID + 1}",
        f"/api/products/{10**22}",
        f"/api/products?category_id={BIG}",
        f"/api/products?category_id={-(2**63) - 1}",
    ],
)
async def test_ids_beyond_int64_in_public_reads_are_422(
    client: httpx.AsyncClient, path: str
) -> None:
    _error(await client.get(path), 422, "Expected `int`")


async def test_a_negative_id_beyond_int64_in_a_path_is_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(f"/api/products/{-(2**63) - 1}")
    assert response.status_code in (404, 422)
    assert response.json()["status_code"] == response.status_code


async def test_ids_beyond_int64_in_wishes_and_orders_are_422(
    client: httpx.AsyncClient, customer: dict[str, str]
) -> None:
    _error(await client.put(f"/api/wishes/{BIG}", headers=customer), 422, "product_id")
    _error(await client.delete(f"/api/wishes/{BIG}", headers=customer), 422, "product_id")
    _error(await place(client, customer, order_body((BIG, 1))), 422, "option_id")


async def test_ids_beyond_int64_in_admin_routes_are_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    _error(
        await client.patch(f"/api/admin/products/{BIG}", json={}, headers=admin_headers),
        422,
        "product_id",
    )
    _error(
        await client.post(
            "/api/admin/categories", json={"name": "x", "parent_id": BIG}, headers=admin_headers
        ),
        422,
        "parent_id",
    )
    _error(
        await client.delete(f"/api/admin/categories/1?move_to={BIG}", headers=admin_headers),
        422,
        "move_to",
    )


async def test_an_unknown_query_parameter_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    body = _error(await client.get("/api/products?categroy_id=3"), 400, "categroy_id")
    assert body["extra"] == {"parameters": ["categroy_id"]}
    assert (await client.get("/api/products?category_id=3&limit=5")).status_code in (200, 404)


# --- bodies the decoders choke on -------------------------------------------------------


async def test_json_nested_a_thousand_deep_is_a_400(
    client: httpx.AsyncClient, customer: dict[str, str]
) -> None:
    deep = b"[" * 1000 + b"]" * 1000
    for path, headers in (("/api/auth/login", {}), ("/api/orders", customer)):
        response = await client.post(
            path,
            content=b'{"lines": ' + deep + b"}",
            headers={**headers, "content-type": "application/json", "Idempotency-Key": "k"},
        )
        _error(response, 400, "nested deeper")


async def test_a_body_that_is_not_utf8_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/signup",
        content=b'{"email": "a@example.com", "password": "\xff\xfe", "name": "x"}',
        headers={"content-type": "application/json"},
    )
    _error(response, 400, "utf-8")


@pytest.mark.parametrize("field", ["name", "email", "address", "phone", "password"])
async def test_nul_in_any_sign_up_field_is_a_422(client: httpx.AsyncClient, field: str) -> None:
    body = {"email": "ann@example.com", "password": TEST_PASSWORD, "name": "Ann"}
    body[field] = f"{body.get(field, 'x')}\u0000"
    _error(await client.post("/api/auth/signup", json=body), 422, "NUL")
    assert (await client.post("/api/auth/login", json=body)).status_code in (401, 422)


async def test_nul_in_a_shipping_address_is_a_422_and_buys_nothing(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option_id = await make_option(clean, stock=5)
    body = order_body((option_id, 1), shipping_address="1 Main St\u0000")
    _error(await place(client, customer, body), 422, "NUL")
    assert (await clean.stock.available([option_id]))[option_id] == 5


async def test_an_escaped_backslash_before_u0000_is_text_not_nul(
    client: httpx.AsyncClient,
) -> None:
    body = {"email": "ann@example.com", "password": TEST_PASSWORD, "name": "C:\\u0000dir"}
    response = await client.post("/api/auth/signup", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "C:\\u0000dir"


# --- the orders cursor at the edges of the calendar --------------------------------------


_FIRST = micros_of(datetime(1, 1, 1, tzinfo=UTC))
_LAST = micros_of(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))


def _orders_cursor(micros: int) -> str:
    return encode_cursor("orders", (micros, *uuid_key(uuid.uuid4())))


@pytest.mark.parametrize("micros", [_FIRST - 1, _LAST + 1, -(2**63), 2**63 - 1])
async def test_an_orders_cursor_past_the_edge_of_the_calendar_is_a_400(
    client: httpx.AsyncClient, customer: dict[str, str], micros: int
) -> None:
    response = await client.get(
        "/api/orders", params={"cursor": _orders_cursor(micros)}, headers=customer
    )
    body = _error(response, 400, "cursor")
    assert body["extra"] == {"parameter": "cursor"}


@pytest.mark.parametrize("micros", [_FIRST, _LAST])
async def test_an_orders_cursor_at_the_edge_of_the_calendar_pages_on(
    client: httpx.AsyncClient, customer: dict[str, str], micros: int
) -> None:
    response = await client.get(
        "/api/orders", params={"cursor": _orders_cursor(micros)}, headers=customer
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("path", ["/api/orders", "/api/wishes", "/api/products"])
async def test_every_cursor_too_long_or_garbage_is_the_same_400(
    client: httpx.AsyncClient, customer: dict[str, str], path: str
) -> None:
    for cursor in ("garbage", "A" * 500):
        response = await client.get(path, params={"cursor": cursor}, headers=customer)
        assert _error(response, 400, "cursor")["extra"] == {"parameter": "cursor"}


# --- admin: money, positions, restocks, the category tree, list lengths --------------------


async def test_prices_above_the_money_cap_are_422(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    product = {
        "name": "Gold",
        "price": 2**62,
        "category_ids": [],
        "options": [{"name": "x", "stock": 1}],
    }
    _error(
        await client.post("/api/admin/products", json=product, headers=admin_headers), 422, "price"
    )
    product_id = await make_product(clean)
    _error(
        await client.patch(
            f"/api/admin/products/{product_id}",
            json={"price": MAX_PRICE + 1},
            headers=admin_headers,
        ),
        422,
        "price",
    )
    _error(
        await client.post(
            f"/api/admin/products/{product_id}/options",
            json={"name": "y", "stock": 1, "price": 2**62},
            headers=admin_headers,
        ),
        422,
        "price",
    )


async def test_an_order_total_above_the_cap_is_422_and_reserves_nothing(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    options = [await make_option(clean, stock=100, price=MAX_PRICE) for _ in range(11)]
    response = await place(client, customer, order_body(*((o, 100) for o in options)))
    _error(response, 422, "total")
    assert set((await clean.stock.available(options)).values()) == {100}


async def test_positions_beyond_32_bits_are_422(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    body = {"name": "Far", "position": 2**31}
    _error(
        await client.post("/api/admin/categories", json=body, headers=admin_headers),
        422,
        "position",
    )
    category_id = await make_category(clean)
    _error(
        await client.patch(
            f"/api/admin/categories/{category_id}", json={"position": 2**40}, headers=admin_headers
        ),
        422,
        "position",
    )
    product_id = await make_product(clean)
    _error(
        await client.post(
            f"/api/admin/products/{product_id}/images",
            json={"url": "https://img.example/a.jpg", "position": 2**31},
            headers=admin_headers,
        ),
        422,
        "position",
    )


async def test_a_restock_past_the_stock_column_is_422_and_adds_nothing(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option_id = await make_option(clean, stock=0)
    near = MAX_INT32 - 10
    async with clean.engine.begin() as conn:
        await conn.execute(
            update(OptionRow).where(OptionRow.id == option_id).values(stock_total=near, stock=near)
        )
    response = await client.post(
        f"/api/admin/options/{option_id}/restock",
        json={"units": 1_000},
        headers={**admin_headers, "Idempotency-Key": "too-many"},
    )
    body = _error(response, 422, "in total")
    assert body["extra"]["max_stock_total"] == MAX_INT32
    async with clean.engine.connect() as conn:
        total = (
            await conn.execute(select(OptionRow.stock_total).where(OptionRow.id == option_id))
        ).scalar_one()
    assert total == near


async def test_a_category_chain_stops_at_the_depth_cap(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    parent: int | None = None
    for level in range(MAX_CATEGORY_DEPTH):
        response = await client.post(
            "/api/admin/categories",
            json={"name": f"level {level}", "parent_id": parent},
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
        parent = response.json()["id"]
    too_deep = await client.post(
        "/api/admin/categories",
        json={"name": "one more", "parent_id": parent},
        headers=admin_headers,
    )
    _error(too_deep, 422, "levels deep")
    # Moving a two-level subtree under the deepest category is refused the same way.
    top = (
        await client.post("/api/admin/categories", json={"name": "top"}, headers=admin_headers)
    ).json()
    await client.post(
        "/api/admin/categories",
        json={"name": "child", "parent_id": top["id"]},
        headers=admin_headers,
    )
    moved = await client.patch(
        f"/api/admin/categories/{top['id']}", json={"parent_id": parent}, headers=admin_headers
    )
    _error(moved, 422, "levels deep")
    tree = await client.get("/api/categories")
    assert tree.status_code == 200


async def test_a_500_level_chain_already_in_the_table_lists_to_the_depth_cap(
    client: httpx.AsyncClient, clean: Container
) -> None:
    parent: int | None = None
    async with clean.engine.begin() as conn:
        for level in range(500):
            parent = (
                await conn.execute(
                    insert(CategoryRow)
                    .values(name=f"l{level}", parent_id=parent)
                    .returning(CategoryRow.id)
                )
            ).scalar_one()
    response = await client.get("/api/categories")
    assert response.status_code == 200, response.text[:300]
    node, depth = response.json()[0], 1
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert depth == MAX_CATEGORY_DEPTH


async def test_forty_thousand_category_ids_are_a_422_not_an_outage(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    ids = list(range(1, 40_001))
    product = {
        "name": "Many",
        "price": 1,
        "category_ids": ids,
        "options": [{"name": "x", "stock": 1}],
    }
    _error(
        await client.post("/api/admin/products", json=product, headers=admin_headers),
        422,
        "category_ids",
    )
    product_id = await make_product(clean)
    _error(
        await client.patch(
            f"/api/admin/products/{product_id}", json={"category_ids": ids}, headers=admin_headers
        ),
        422,
        "category_ids",
    )


# --- a validly signed token whose account is gone ----------------------------------------


async def test_a_token_of_a_deleted_account_is_401_wherever_the_account_is_used(
    client: httpx.AsyncClient, clean: Container
) -> None:
    user_id, headers = await make_user(clean)
    option_id = await make_option(clean, stock=3)
    product_id = await make_product(clean)
    async with clean.engine.begin() as conn:
        await conn.execute(delete(UserRow).where(UserRow.id == user_id))

    _error(await place(client, headers, order_body((option_id, 1))), 401, "no longer exists")
    assert (await clean.stock.available([option_id]))[option_id] == 3
    _error(await client.get("/api/me", headers=headers), 401, "no longer exists")
    _error(await client.put(f"/api/wishes/{product_id}", headers=headers), 401)
    change = {"current_password": TEST_PASSWORD, "new_password": "another Passw0rd"}
    _error(await client.post("/api/me/password", json=change, headers=headers), 401)


# --- unit: only real connection failures are outages --------------------------------------


def test_only_connection_failures_count_as_outages() -> None:
    import asyncpg
    from sqlalchemy.exc import InterfaceError

    from shop.entrypoints.http.errors import is_connection_failure

    too_many = InterfaceError(
        "INSERT …",
        None,
        asyncpg.exceptions.InterfaceError("the number of query arguments cannot exceed 32767"),
    )
    closed = InterfaceError(
        "SELECT 1", None, asyncpg.exceptions.ConnectionDoesNotExistError("closed")
    )
    refused = InterfaceError("SELECT 1", None, ConnectionRefusedError(111, "refused"))
    assert not is_connection_failure(too_many)
    assert is_connection_failure(closed)
    assert is_connection_failure(refused)


# --- sessions end when they should ----------------------------------------------------------


async def _log_in(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_password_change_ends_every_session_of_the_account(
    client: httpx.AsyncClient, clean: Container
) -> None:
    email = f"pw-{uuid.uuid4().hex[:8]}@example.com"
    await make_user(clean, email=email)
    phone = await _log_in(client, email, TEST_PASSWORD)
    laptop = await _log_in(client, email, TEST_PASSWORD)
    bearer = {"Authorization": f"Bearer {phone['access_token']}"}

    wrong = {"current_password": "not it at all 1", "new_password": "brand new Passw0rd"}
    _error(
        await client.post("/api/me/password", json=wrong, headers=bearer), 403, "current password"
    )
    weak = {"current_password": TEST_PASSWORD, "new_password": "short"}
    _error(await client.post("/api/me/password", json=weak, headers=bearer), 422, "new_password")

    good = {"current_password": TEST_PASSWORD, "new_password": "brand new Passw0rd"}
    changed = await client.post("/api/me/password", json=good, headers=bearer)
    assert changed.status_code == 204, changed.text
    assert changed.headers["cache-control"] == "no-store"
    for session in (phone, laptop):
        refreshed = await client.post(
            "/api/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        _error(refreshed, 401)
    _error(
        await client.post("/api/auth/login", json={"email": email, "password": TEST_PASSWORD}),
        401,
    )
    await _log_in(client, email, "brand new Passw0rd")


async def test_create_admin_on_an_existing_account_revokes_its_refresh_tokens(
    client: httpx.AsyncClient, clean: Container
) -> None:
    from shop.domain.identity import services

    email = f"promoted-{uuid.uuid4().hex[:8]}@example.com"
    user_id, _ = await make_user(clean, email=email)
    stolen = await _log_in(client, email, TEST_PASSWORD)
    await services.create_admin(
        email, "admin Passw0rd 1", name="", uow=clean.identity_uow(), hasher=clean.password_hasher
    )
    refreshed = await client.post(
        "/api/auth/refresh", json={"refresh_token": stolen["refresh_token"]}
    )
    _error(refreshed, 401)
    async with clean.engine.connect() as conn:
        alive = (
            await conn.execute(
                select(RefreshTokenRow.id).where(
                    RefreshTokenRow.user_id == user_id, RefreshTokenRow.revoked.is_(False)
                )
            )
        ).all()
    assert alive == []


# --- headers ------------------------------------------------------------------------------


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/api/categories", "/no/such/path", "/docs"):
        response = await client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
    docs = await client.get("/docs")
    assert docs.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert "x-frame-options" not in (await client.get("/health")).headers


async def test_token_bearing_responses_are_not_stored(
    client: httpx.AsyncClient, clean: Container
) -> None:
    email = f"cache-{uuid.uuid4().hex[:8]}@example.com"
    await make_user(clean, email=email)
    login = await client.post("/api/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert login.headers["cache-control"] == "no-store"
    tokens = login.json()
    refresh = await client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.headers["cache-control"] == "no-store"
    me = await client.get(
        "/api/me", headers={"Authorization": f"Bearer {refresh.json()['access_token']}"}
    )
    assert me.headers["cache-control"] == "no-store"


# --- the OpenAPI document -------------------------------------------------------------------


async def test_the_openapi_document_declares_statuses_security_and_limits(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    place_order = doc["paths"]["/api/orders"]["post"]
    assert {"200", "201", "400", "401", "409", "413", "422", "429", "503"} <= set(
        place_order["responses"]
    )
    assert place_order["security"] == [{"bearer": []}]
    error = place_order["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/ErrorBody")
    assert "security" not in doc["paths"]["/api/categories"]["get"]
    admin = doc["paths"]["/api/admin/products"]["post"]["responses"]
    assert {"401", "403"} <= set(admin)
    assert "403" in doc["paths"]["/api/me/password"]["post"]["responses"]

    schemas = doc["components"]["schemas"]
    assert schemas["OrderIn"]["additionalProperties"] is False
    assert schemas["OrderLineIn"]["properties"]["quantity"]["maximum"] == 100
    assert schemas["OrderLineIn"]["properties"]["option_id"]["maximum"] == MAX_ID
    assert schemas["SignUpIn"]["properties"]["password"]["minLength"] == 8
    cursor = next(
        p for p in doc["paths"]["/api/orders"]["get"]["parameters"] if p["name"] == "cursor"
    )
    assert cursor["schema"]["maxLength"] == 200 or any(
        s.get("maxLength") == 200 for s in cursor["schema"].get("oneOf", [])
    )


async def test_options_lists_every_method_of_a_path(
    client: httpx.AsyncClient, customer: dict[str, str]
) -> None:
    response = await client.options("/api/wishes/1", headers=customer)
    assert response.status_code in (200, 204)
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert {"PUT", "DELETE", "OPTIONS"} <= allowed

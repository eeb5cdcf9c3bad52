"""The orders API end to end: purchase, payment, cancel, ship, deliver, refund, errors."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from shop.entrypoints.http.app import create_app
from tests.conftest import http_client
from tests.factories import make_option, make_user
from tests.orders_client import act, admin, order_body, place, stock_and_ledger, with_settings
from tests.payments_client import event, pay, payments_of, run_sandbox_job, send, start_payment


@pytest.fixture
async def admin_headers(clean: Container) -> dict[str, str]:
    _, headers = await make_user(clean, role=Role.ADMIN)
    return headers


@pytest.fixture
async def customer(clean: Container) -> dict[str, str]:
    _, headers = await make_user(clean)
    return headers


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.mark.parametrize(
    ("method", "ttl"), [("card", timedelta(minutes=15)), ("bank_transfer", timedelta(days=3))]
)
async def test_the_whole_life_of_an_order(
    client: httpx.AsyncClient,
    app: Litestar,
    clean: Container,
    customer: dict[str, str],
    admin_headers: dict[str, str],
    method: str,
    ttl: timedelta,
) -> None:
    option = await make_option(clean, stock=5, price=700)
    placed = await place(client, customer, order_body((option, 2), payment_method=method))
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "pending_payment"
    assert order["total"] == 1_400
    assert order["lines"] == [
        {
            "option_id": option,
            "product_id": order["lines"][0]["product_id"],
            "quantity": 2,
            "unit_price": 700,
            "subtotal": 1_400,
        }
    ]
    assert _ts(order["pay_by"]) - _ts(order["created_at"]) == ttl
    assert placed.headers["location"] == f"/api/orders/{order['id']}"
    assert (await clean.stock.available([option]))[option] == 3

    fetched = await client.get(f"/api/orders/{order['id']}", headers=customer)
    assert fetched.json() == order
    listed = await client.get("/api/orders", headers=customer)
    assert [o["id"] for o in listed.json()["items"]] == [order["id"]]

    paid = await pay(client, clean, customer, order["id"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"
    shipped = await admin(client, admin_headers, order["id"], "ship")
    assert shipped.json()["status"] == "shipping"
    delivered = await admin(client, admin_headers, order["id"], "deliver")
    assert delivered.json()["status"] == "delivered"
    asked = await act(client, customer, order["id"], "refund")
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "refund_pending"
    (payment,) = await payments_of(client, admin_headers, order["id"])
    assert (payment["status"], payment["refund_reason"]) == ("refund_pending", "customer")
    # The sandbox confirms the refund the way a provider does: a signed webhook, from a job.
    key = f"sandbox:{payment['payment_id']}:refund.succeeded:{payment['refund_id']}"
    assert await run_sandbox_job(clean, app, key) == 200
    refunded = await client.get(f"/api/orders/{order['id']}", headers=customer)
    assert refunded.json()["status"] == "refunded"
    assert refunded.json()["refunded_at"] is not None

    assert (await clean.stock.available([option]))[option] == 3, "refunds stay sold"
    assert await stock_and_ledger(clean, option) == (3, 3)


@pytest.mark.parametrize("paid_first", [False, True], ids=["unpaid", "paid"])
async def test_cancelling_before_shipping_puts_the_units_back(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str], paid_first: bool
) -> None:
    option = await make_option(clean, stock=3, price=500)
    order = (await place(client, customer, order_body((option, 3)))).json()
    if paid_first:
        await pay(client, clean, customer, order["id"])
    assert (await clean.stock.available([option]))[option] == 0
    cancelled = await act(client, customer, order["id"], "cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert (await clean.stock.available([option]))[option] == 3
    again = await act(client, customer, order["id"], "cancel")
    assert again.status_code == 200
    assert (await clean.stock.available([option]))[option] == 3, "units come back once"
    assert await stock_and_ledger(clean, option) == (3, 3)


async def test_cancelling_after_shipping_is_a_conflict_naming_the_state(
    client: httpx.AsyncClient,
    clean: Container,
    customer: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    option = await make_option(clean, stock=3, price=500)
    order = (await place(client, customer, order_body((option, 1)))).json()
    await pay(client, clean, customer, order["id"])
    await admin(client, admin_headers, order["id"], "ship")
    refused = await act(client, customer, order["id"], "cancel")
    assert refused.status_code == 409
    assert refused.json()["extra"] == {"state": "shipping"}
    assert (await clean.stock.available([option]))[option] == 2


async def test_a_refund_is_allowed_inside_the_window_and_refused_after_it(
    clean: Container, customer: dict[str, str], admin_headers: dict[str, str]
) -> None:
    quick = with_settings(clean, refund_window=1.0)
    option = await make_option(clean, stock=5, price=100)
    async with http_client(create_app(quick)) as client:
        ids = []
        for _ in range(2):
            order = (await place(client, customer, order_body((option, 1)))).json()
            await pay(client, clean, customer, order["id"])
            await admin(client, admin_headers, order["id"], "ship")
            await admin(client, admin_headers, order["id"], "deliver")
            ids.append(order["id"])
        inside = await act(client, customer, ids[0], "refund")
        assert inside.status_code == 200, inside.text
        await asyncio.sleep(1.1)
        outside = await act(client, customer, ids[1], "refund")
        assert outside.status_code == 409
        assert outside.json()["extra"]["state"] == "delivered"
        assert "window" in outside.json()["detail"]


async def test_refund_before_delivery_is_refused(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=1)
    order = (await place(client, customer, order_body((option, 1)))).json()
    refused = await act(client, customer, order["id"], "refund")
    assert refused.status_code == 409
    assert refused.json()["extra"] == {"state": "pending_payment"}


async def test_the_same_request_again_returns_the_same_order(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=5)
    body = order_body((option, 2))
    first = await place(client, customer, body, key="buy-1")
    again = await place(client, customer, body, key="buy-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert (await clean.stock.available([option]))[option] == 3


async def test_the_same_key_with_another_body_is_a_422(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=5)
    await place(client, customer, order_body((option, 2)), key="buy-1")
    other = await place(client, customer, order_body((option, 3)), key="buy-1")
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]
    assert (await clean.stock.available([option]))[option] == 3


async def test_identical_requests_racing_make_one_order(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=5)
    body = order_body((option, 2))
    responses = await asyncio.gather(
        *(place(client, customer, body, key="double-click") for _ in range(10))
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert (await clean.stock.available([option]))[option] == 3
    listed = (await client.get("/api/orders", headers=customer)).json()
    assert len(listed["items"]) == 1
    assert await stock_and_ledger(clean, option) == (3, 3)


async def test_a_payment_is_idempotent_and_must_match_the_total(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=5, price=250)
    order = (await place(client, customer, order_body((option, 2)))).json()
    payment = (await start_payment(client, customer, order["id"])).json()
    wrong = await send(client, clean, event(payment, amount=499))
    assert wrong.status_code == 422
    assert wrong.json()["extra"]["expected_amount"] == 500
    succeeded = event(payment)
    first = await send(client, clean, succeeded)
    paid_at = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()["paid_at"]
    second = await send(client, clean, succeeded)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["outcome"] == "replayed"
    again = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()
    assert (again["status"], again["paid_at"]) == ("paid", paid_at)


async def test_a_cancelled_order_cannot_be_paid(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=5, price=250)
    order = (await place(client, customer, order_body((option, 1)))).json()
    await act(client, customer, order["id"], "cancel")
    refused = await pay(client, clean, customer, order["id"])
    assert refused.status_code == 409
    assert refused.json()["extra"] == {"state": "cancelled"}


async def test_sold_out_is_a_409_naming_the_option(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    plenty = await make_option(clean, stock=5)
    scarce = await make_option(clean, stock=1)
    refused = await place(client, customer, order_body((plenty, 1), (scarce, 2)))
    assert refused.status_code == 409
    assert refused.json()["extra"]["option_id"] == scarce
    assert await clean.stock.available([plenty, scarce]) == {plenty: 5, scarce: 1}


async def test_one_per_customer_holds_under_concurrent_requests_and_frees_up_on_cancel(
    clean: Container, customer: dict[str, str]
) -> None:
    drop = with_settings(clean, purchase_limit_per_option=1)
    option = await make_option(clean, stock=10)
    async with http_client(create_app(drop)) as client:
        responses = await asyncio.gather(
            *(place(client, customer, order_body((option, 1))) for _ in range(8))
        )
        assert sorted(r.status_code for r in responses) == [201] + [409] * 7
        refused = next(r for r in responses if r.status_code == 409).json()
        assert refused["extra"] == {"option_id": option, "limit": 1, "rule": "per_buyer_limit"}
        (bought,) = (r.json() for r in responses if r.status_code == 201)
        assert (await clean.stock.available([option]))[option] == 9
        _, someone_else = await make_user(clean)
        assert (await place(client, someone_else, order_body((option, 1)))).status_code == 201
        await act(client, customer, bought["id"], "cancel")
        assert (await place(client, customer, order_body((option, 1)))).status_code == 201


async def test_someone_elses_order_is_not_found(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=5, price=100)
    order = (await place(client, customer, order_body((option, 1)))).json()
    _, stranger = await make_user(clean)
    assert (await client.get(f"/api/orders/{order['id']}", headers=stranger)).status_code == 404
    for action in ("payments", "cancel", "refund"):
        response = await act(client, stranger, order["id"], action)
        assert response.status_code == 404, action
    missing = await client.get(f"/api/orders/{uuid.uuid4()}", headers=customer)
    assert missing.status_code == 404
    assert (await client.get("/api/orders", headers=stranger)).json()["items"] == []
    mine = await client.get(f"/api/orders/{order['id']}", headers=customer)
    assert mine.json()["status"] == "pending_payment"


async def test_the_list_pages_newest_first_without_repeating_the_boundary(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=10)
    made = [(await place(client, customer, order_body((option, 1)))).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/orders", params=params, headers=customer)).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    bad = await client.get("/api/orders", params={"cursor": "garbage"}, headers=customer)
    assert bad.status_code == 400
    too_big = await client.get("/api/orders", params={"limit": 1000}, headers=customer)
    assert 400 <= too_big.status_code < 500


BAD_BODIES: list[tuple[str, Any]] = [
    ("quantity-zero", {"lines": [{"option_id": 1, "quantity": 0}]}),
    ("no-lines", {"lines": []}),
    ("too-many-lines", {"lines": [{"option_id": n, "quantity": 1} for n in range(1, 5)]}),
    ("quantity-over-cap", {"lines": [{"option_id": 1, "quantity": 4}]}),
    ("unknown-option", {"lines": [{"option_id": 999_999, "quantity": 1}]}),
    ("bad-payment-method", {"payment_method": "cash"}),
    ("blank-address", {"shipping_address": "   "}),
    ("price-is-not-a-number", {"lines": [{"option_id": 1, "quantity": "two"}]}),
]


@pytest.mark.parametrize(("case", "change"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
async def test_bad_input_is_a_4xx_json_error_and_buys_nothing(
    clean: Container, customer: dict[str, str], case: str, change: dict[str, Any]
) -> None:
    strict = with_settings(clean, max_order_lines=3, max_line_quantity=3)
    option = await make_option(clean, stock=5)
    body = order_body((option, 1)) | change
    for line in body["lines"]:
        if line["option_id"] == 1:
            line["option_id"] = option
    async with http_client(create_app(strict)) as client:
        response = await place(client, customer, body)
    # An option that does not exist is a 404, like any id a request names (issue 15).
    expected = 404 if case == "unknown-option" else 422
    assert response.status_code == expected, (case, response.text)
    assert response.json()["status_code"] == expected
    assert response.json()["detail"]
    assert (await clean.stock.available([option]))[option] == 5


async def test_a_missing_idempotency_key_or_a_non_json_body_is_refused(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=5)
    no_key = await client.post("/api/orders", json=order_body((option, 1)), headers=customer)
    assert no_key.status_code == 422
    assert "Idempotency-Key" in no_key.json()["detail"]
    not_json = await client.post(
        "/api/orders",
        content=b"lines=1",
        headers={**customer, "Idempotency-Key": "k", "content-type": "application/json"},
    )
    assert not_json.status_code == 400
    assert not_json.json()["status_code"] == 400
    assert (await clean.stock.available([option]))[option] == 5


ROUTES = [
    ("POST", "/api/orders"),
    ("GET", "/api/orders"),
    ("GET", "/api/orders/{id}"),
    ("POST", "/api/orders/{id}/payments"),
    ("GET", "/api/admin/payments"),
    ("POST", "/api/orders/{id}/cancel"),
    ("POST", "/api/orders/{id}/refund"),
    ("POST", "/api/admin/orders/{id}/ship"),
    ("POST", "/api/admin/orders/{id}/deliver"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_needs_a_token(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path.format(id=uuid.uuid4()), json={})
    assert response.status_code == 401
    assert response.json()["status_code"] == 401


@pytest.mark.parametrize("action", ["ship", "deliver"])
async def test_a_customer_cannot_ship_or_deliver(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str], action: str
) -> None:
    option = await make_option(clean, stock=5, price=100)
    order = (await place(client, customer, order_body((option, 1)))).json()
    await pay(client, clean, customer, order["id"])
    refused = await admin(client, customer, order["id"], action)
    assert refused.status_code == 403
    assert (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()[
        "status"
    ] == "paid"


async def test_an_unpaid_order_cannot_be_shipped(
    client: httpx.AsyncClient,
    clean: Container,
    customer: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    option = await make_option(clean, stock=5, price=100)
    order = (await place(client, customer, order_body((option, 1)))).json()
    refused = await admin(client, admin_headers, order["id"], "ship")
    assert refused.status_code == 409
    assert refused.json()["extra"] == {"state": "pending_payment"}


async def test_every_order_route_has_an_operation_id(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    ids = {
        operation["operationId"]
        for path, item in schema["paths"].items()
        if "/orders" in path
        for operation in item.values()
    }
    assert ids == {
        "PlaceOrder",
        "ListOrders",
        "GetOrder",
        "StartPayment",
        "CancelOrder",
        "RefundOrder",
        "ShipOrder",
        "DeliverOrder",
    }

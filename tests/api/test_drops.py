"""Drops over HTTP: the admin API, bad input, and the rules enforced at purchase time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from tests.drops_helpers import announce, drop_body, start_now
from tests.factories import make_option, make_user
from tests.orders_client import order_body, place
from tests.payments_client import pay


@pytest.fixture
async def admin_headers(clean: Container) -> dict[str, str]:
    _, headers = await make_user(clean, role=Role.ADMIN)
    return headers


@pytest.fixture
async def customer(clean: Container) -> dict[str, str]:
    _, headers = await make_user(clean)
    return headers


async def test_a_drop_is_announced_listed_and_shown_with_live_figures(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=30)
    drop = await announce(client, admin_headers, [option], per_buyer_limit=2)
    assert drop["status"] == "scheduled"
    assert drop["payment_methods"] == ["card"]
    assert (drop["per_buyer_limit"], drop["max_open_orders_per_buyer"]) == (2, 1)
    listed = (await client.get("/api/drops")).json()["items"]
    assert [d["id"] for d in listed] == [drop["id"]]
    shown = (await client.get(f"/api/admin/drops/{drop['id']}", headers=admin_headers)).json()
    assert shown["figures"] == {
        "sold": 0,
        "held": 0,
        "left": 30,
        "waiting": 0,
        "admitted": 0,
        "admit_per_second": 10,
    }


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"starts_at": datetime(2020, 1, 1, tzinfo=UTC)}, "starts_at"),
        ({"ends_at": datetime.now(UTC) + timedelta(minutes=5)}, "ends_at"),
        ({"per_buyer_limit": 0}, "per_buyer_limit"),
        ({"max_open_orders_per_buyer": -1}, "max_open_orders_per_buyer"),
        ({"admit_per_second": 0}, "admit_per_second"),
        ({"payment_methods": []}, "payment_methods"),
        ({"option_ids": []}, "option_ids"),
    ],
)
async def test_bad_drops_are_refused_naming_the_field(
    client: httpx.AsyncClient,
    clean: Container,
    admin_headers: dict[str, str],
    rules: dict[str, object],
    field: str,
) -> None:
    option = await make_option(clean, stock=3)
    body = drop_body([option]) | {
        k: v.isoformat() if isinstance(v, datetime) else v for k, v in rules.items()
    }
    answer = await client.post("/api/admin/drops", json=body, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    assert named_field(answer.json()["extra"]) == field
    assert (await client.get("/api/drops")).json()["items"] == []  # nothing half-made


def named_field(extra: Any) -> str:
    """The field a 422 names: the domain's ``field``, or the first key the schema refused."""
    return str(extra["field"] if isinstance(extra, dict) else extra[0]["key"])


async def test_an_unknown_option_is_404_naming_it(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    """As for every id a body names that does not exist (the document declares 404)."""
    body = drop_body([await make_option(clean, stock=3), 987654])
    answer = await client.post("/api/admin/drops", json=body, headers=admin_headers)
    assert answer.status_code == 404, answer.text
    assert answer.json()["extra"] == {"field": "option_ids", "unknown": [987654]}
    assert (await client.get("/api/drops")).json()["items"] == []


async def test_an_option_is_in_one_live_drop_at_a_time(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=3)
    first = await announce(client, admin_headers, [option])
    answer = await client.post("/api/admin/drops", json=drop_body([option]), headers=admin_headers)
    assert answer.status_code == 409
    assert answer.json()["extra"] == {
        "field": "option_ids",
        "option_ids": [option],
        "drop_id": first["id"],
    }


async def test_customers_cannot_manage_drops(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    option = await make_option(clean, stock=3)
    answer = await client.post("/api/admin/drops", json=drop_body([option]), headers=customer)
    assert answer.status_code == 403


async def test_rules_may_change_until_the_start_then_only_the_end_and_rate(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=3)
    drop = await announce(client, admin_headers, [option])
    path = f"/api/admin/drops/{drop['id']}"
    changed = await client.patch(path, json={"per_buyer_limit": 3}, headers=admin_headers)
    assert changed.status_code == 200 and changed.json()["per_buyer_limit"] == 3
    await start_now(clean, drop["id"])
    frozen = await client.patch(path, json={"per_buyer_limit": 5}, headers=admin_headers)
    assert frozen.status_code == 409
    assert frozen.json()["extra"]["field"] == "per_buyer_limit"
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    ok = await client.patch(
        path, json={"ends_at": later, "admit_per_second": 50}, headers=admin_headers
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["admit_per_second"] == 50


async def test_purchase_rules_of_a_drop(
    client: httpx.AsyncClient,
    clean: Container,
    admin_headers: dict[str, str],
    customer: dict[str, str],
) -> None:
    option = await make_option(clean, stock=10)
    other = await make_option(clean, stock=10)
    drop = await announce(client, admin_headers, [option], payment_window_seconds=120)
    early = await place(client, customer, order_body((option, 1)))
    assert early.status_code == 409
    assert early.json()["extra"]["starts_at"] == drop["starts_at"].replace("Z", "+00:00")
    await start_now(clean, drop["id"])
    by_bank = await place(client, customer, order_body((option, 1), payment_method="bank_transfer"))
    assert by_bank.status_code == 422
    assert by_bank.json()["extra"]["field"] == "payment_method"
    mixed = await place(client, customer, order_body((option, 1), (other, 1)))
    assert mixed.status_code == 422
    too_many = await place(client, customer, order_body((option, 2)))
    assert too_many.status_code == 409
    assert too_many.json()["extra"]["rule"] == "per_buyer_limit"
    bought = await place(client, customer, order_body((option, 1)))
    assert bought.status_code == 201, bought.text
    order = bought.json()
    window = datetime.fromisoformat(order["pay_by"]) - datetime.fromisoformat(order["created_at"])
    assert window == timedelta(seconds=120)
    # Outside the drop the option next door sells as today.
    outside = await place(client, customer, order_body((other, 3)))
    assert outside.status_code == 201
    assert outside.json()["drop_id"] is None


async def test_an_order_shows_the_drop_it_was_placed_in(
    client: httpx.AsyncClient,
    clean: Container,
    admin_headers: dict[str, str],
    customer: dict[str, str],
) -> None:
    option = await make_option(clean, stock=3)
    drop = await announce(client, admin_headers, [option])
    await start_now(clean, drop["id"])
    bought = await place(client, customer, order_body((option, 1)))
    assert bought.status_code == 201, bought.text
    assert bought.json()["drop_id"] == drop["id"]
    shown = await client.get(f"/api/orders/{bought.json()['id']}", headers=customer)
    assert shown.json()["drop_id"] == drop["id"]
    listed = await client.get("/api/orders", headers=customer)
    assert [o["drop_id"] for o in listed.json()["items"]] == [drop["id"]]
    document = (await client.get("/schema/openapi.json")).json()
    order_schema = document["components"]["schemas"]["OrderOut"]["properties"]["drop_id"]
    assert {"type": "integer"} in order_schema["oneOf"]


async def test_hoarding_is_impossible_inside_a_drop(
    client: httpx.AsyncClient,
    clean: Container,
    admin_headers: dict[str, str],
    customer: dict[str, str],
) -> None:
    """The issue's hoarder: bank-transfer orders of 100 units held a 300-unit option for days.
    In a drop: one unit per option, one unpaid order, a ten-minute window, card only."""
    options = [await make_option(clean, stock=300) for _ in range(2)]
    drop = await announce(client, admin_headers, options, payment_methods=["card", "bank_transfer"])
    await start_now(clean, drop["id"])
    hoard = await place(
        client, customer, order_body((options[0], 100), payment_method="bank_transfer")
    )
    assert hoard.status_code == 409
    first = await place(client, customer, order_body((options[0], 1)))
    assert first.status_code == 201
    second = await place(client, customer, order_body((options[1], 1)))
    assert second.status_code == 409
    assert second.json()["extra"]["rule"] == "max_open_orders_per_buyer"
    assert (await client.get(f"/api/admin/drops/{drop['id']}", headers=admin_headers)).json()[
        "figures"
    ]["left"] == 599  # the refused order gave its unit back
    paid = await pay(client, clean, customer, first.json()["id"])
    assert paid.json()["status"] == "paid", paid.text
    assert (await place(client, customer, order_body((options[1], 1)))).status_code == 201


async def test_concurrent_orders_of_one_buyer_cannot_pass_the_open_order_cap(
    client: httpx.AsyncClient,
    clean: Container,
    admin_headers: dict[str, str],
    customer: dict[str, str],
) -> None:
    options = [await make_option(clean, stock=5) for _ in range(8)]
    drop = await announce(client, admin_headers, options, max_open_orders_per_buyer=2)
    await start_now(clean, drop["id"])
    answers = await asyncio.gather(
        *(place(client, customer, order_body((option, 1))) for option in options)
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 201] + [409] * 6, [a.text for a in answers]
    figures = (await client.get(f"/api/admin/drops/{drop['id']}", headers=admin_headers)).json()
    assert (figures["figures"]["held"], figures["figures"]["left"]) == (2, 38)


@pytest.mark.parametrize(
    "rules",
    [
        {"per_buyer_limit": 10**12},
        {"pre_queue_seconds": 10**15},
        {"option_ids": [2**63]},
        {"payment_methods": ["cash"]},
        {"starts_at": "tomorrow"},
        {"surprise": 1},
    ],
)
async def test_out_of_range_or_unknown_fields_are_422_not_500(
    client: httpx.AsyncClient,
    clean: Container,
    admin_headers: dict[str, str],
    rules: dict[str, object],
) -> None:
    option = await make_option(clean, stock=3)
    answer = await client.post(
        "/api/admin/drops", json=drop_body([option]) | rules, headers=admin_headers
    )
    assert answer.status_code == 422, answer.text
    assert (await client.get("/api/drops")).json()["items"] == []


async def test_a_naive_start_time_is_refused(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=3)
    body = drop_body([option]) | {"starts_at": "2030-01-01T10:00:00"}
    answer = await client.post("/api/admin/drops", json=body, headers=admin_headers)
    assert answer.status_code == 422
    assert answer.json()["extra"]["field"] == "starts_at"

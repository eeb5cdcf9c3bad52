"""The admin dashboard: its JSON is admin-only and follows the worker's sale snapshots."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from shop.entrypoints.workers import observe_sale
from tests.drops_helpers import announce, start_now
from tests.factories import make_option, make_user
from tests.jobs import job_context
from tests.orders_client import order_body, place


async def test_the_dashboard_data_is_for_admins_only(
    clean: Container, client: httpx.AsyncClient
) -> None:
    _, customer = await make_user(clean)
    assert (await client.get("/api/admin/dashboard")).status_code == 401
    assert (await client.get("/api/admin/dashboard", headers=customer)).status_code == 403


async def test_the_dashboard_shows_what_the_worker_last_read_from_the_ledger(
    clean: Container, client: httpx.AsyncClient
) -> None:
    _, admin = await make_user(clean, role=Role.ADMIN)
    empty = (await client.get("/api/admin/dashboard", headers=admin)).json()
    assert empty["taken_at"] is None and empty["fresh"] is False
    assert empty["drops_enabled"] is True and empty["drops"] == []  # drops exist, none planned

    option_id = await make_option(clean, stock=4)
    _, buyer = await make_user(clean)
    async with job_context(clean) as ctx:
        await observe_sale(ctx)
        assert (await place(client, buyer, order_body((option_id, 3)))).status_code == 201
        await observe_sale(ctx)
    board = (await client.get("/api/admin/dashboard", headers=admin)).json()
    assert board["fresh"] is True
    assert board["strategy"] == clean.settings.stock_strategy
    assert board["drift"] == 0 and board["oversold"] == 0
    option = next(o for o in board["options"] if o["option_id"] == option_id)
    assert (option["on_sale"], option["sold"], option["held"], option["left"]) == (4, 3, 0, 1)
    assert option["left_history"] == [4, 1]
    assert board["sold_per_second"] > 0
    assert board["purchases_per_second"] > 0


async def test_the_page_loads_nothing_from_outside_the_shop(client: httpx.AsyncClient) -> None:
    page = await client.get("/admin/")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls == ["/admin/dashboard.js"]
    script = await client.get(urls[0])
    assert script.status_code == 200
    assert "/api/admin/dashboard" in script.text
    assert "http://" not in script.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in script.text


async def test_a_drop_fills_its_panel_and_the_drop_gauges(
    clean: Container, client: httpx.AsyncClient
) -> None:
    """A real drop (the drops module, its Redis waiting room): status, countdown, its
    options' totals and its queue, before and after the start, as the worker reads them."""
    option_id = await make_option(clean, stock=3)
    _, admin = await make_user(clean, role=Role.ADMIN)
    drop = await announce(
        client,
        admin,
        [option_id],
        name="Midnight sneakers",
        queue_enabled=True,
        admit_per_second=5,
        starts_at=datetime.now(UTC) + timedelta(seconds=60),
    )
    buyers = [headers for _, headers in [await make_user(clean) for _ in range(2)]]
    for headers in buyers:
        joined = await client.post(f"/api/drops/{drop['id']}/queue", headers=headers)
        assert joined.json()["status"] == "waiting", joined.text

    async with job_context(clean) as ctx:
        await observe_sale(ctx)
    board = (await client.get("/api/admin/dashboard", headers=admin)).json()
    (panel,) = board["drops"]
    assert panel["name"] == "Midnight sneakers" and panel["status"] == "scheduled"
    assert 0 < panel["starts_in_seconds"] <= 60
    assert (panel["on_sale"], panel["sold"], panel["held"], panel["left"]) == (3, 0, 0, 3)
    assert (panel["queue_length"], panel["admitted"], panel["admission_rate"]) == (2, 0, 5)
    assert option_id in [o["option_id"] for o in board["options"]]

    await start_now(clean, drop["id"])
    ticket = (await client.get(f"/api/drops/{drop['id']}/queue", headers=buyers[0])).json()
    assert ticket["status"] == "admitted", ticket
    token = {"Admission-Token": ticket["admission_token"]}
    bought = await place(client, {**buyers[0], **token}, order_body((option_id, 1)))
    assert bought.status_code == 201, bought.text
    async with job_context(clean) as ctx:
        await observe_sale(ctx)
    board = (await client.get("/api/admin/dashboard", headers=admin)).json()
    (panel,) = board["drops"]
    assert panel["status"] == "live" and panel["starts_in_seconds"] == 0
    assert (panel["sold"], panel["left"]) == (1, 2)
    assert panel["admitted"] >= 1 and panel["queue_length"] <= 1
    assert len(panel["queue_length_history"]) == 2
    metrics = (await client.get("/metrics")).text
    label = f'drop_id="{drop["id"]}"'
    assert f"shop_drop_admission_rate{{{label}}} 5.0" in metrics
    assert f"shop_drop_queue_length{{{label}}} {float(panel['queue_length'])}" in metrics

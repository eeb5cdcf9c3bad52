"""The admin dashboard: its JSON is admin-only and follows the worker's sale snapshots."""

from __future__ import annotations

import re

import httpx

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from shop.entrypoints.workers import observe_sale
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
    assert empty["drops_enabled"] is False and empty["drops"] == []

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

"""The admin dashboard: its JSON is admin-only and follows the worker's sale snapshots."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence

import httpx

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from shop.domain.observation.model import DropFigures
from shop.domain.observation.ports import DropsOnSale
from shop.entrypoints.http.app import create_app
from shop.entrypoints.workers import observe_sale
from tests.conftest import http_client
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


class ScheduledDrops:
    """A stand-in drops source (the drops module, issue 14, is not in yet): shows where it
    plugs in and that the dashboard and /metrics carry what it reports."""

    enabled = True

    def __init__(self, option_id: int) -> None:
        self._option_id = option_id

    async def live(self) -> Sequence[DropFigures]:
        return [
            DropFigures(
                drop_id=7,
                name="Midnight sneakers",
                starts_at=time.time() + 60,
                ends_at=None,
                option_ids=(self._option_id,),
                queue_length=42,
                admitted=5,
                admission_rate=10.0,
            )
        ]


async def test_a_drops_source_fills_the_drop_panel_and_gauges(clean: Container) -> None:
    option_id = await make_option(clean, stock=3)
    drops: DropsOnSale = ScheduledDrops(option_id)
    with_drops = dataclasses.replace(clean)
    with_drops.__dict__["observation"] = dataclasses.replace(clean.observation, drops=drops)
    _, admin = await make_user(clean, role=Role.ADMIN)
    async with job_context(with_drops) as ctx:
        await observe_sale(ctx)
    async with http_client(create_app(with_drops)) as client:
        board = (await client.get("/api/admin/dashboard", headers=admin)).json()
        metrics = (await client.get("/metrics")).text
    assert board["drops_enabled"] is True
    (drop,) = board["drops"]
    assert drop["name"] == "Midnight sneakers" and drop["queue_length"] == 42
    assert 0 < drop["starts_in_seconds"] <= 60
    assert option_id in [o["option_id"] for o in board["options"]]
    assert 'shop_drop_queue_length{drop_id="7"} 42.0' in metrics

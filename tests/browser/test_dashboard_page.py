"""/admin/ in a real browser: an admin signs in, a purchase happens, the page follows."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Browser, expect

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from tests.browser.conftest import SCREENS, LiveShop
from tests.conftest import TEST_PASSWORD
from tests.factories import make_option, make_user
from tests.orders_client import order_body


async def test_an_admin_sees_a_purchase_change_the_numbers(
    live_shop: LiveShop, browser: Browser, clean: Container
) -> None:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    await make_user(clean, role=Role.ADMIN, email=email)
    option_id = await make_option(clean, stock=5)
    _, buyer = await make_user(clean)

    page = await browser.new_page(viewport={"width": 1200, "height": 700})
    await page.goto(f"{live_shop.base_url}/admin/")
    await page.fill("#email", email)
    await page.fill("#password", TEST_PASSWORD)
    await page.click("#login button[type=submit]")

    row = page.locator(f'#options tr[data-option-id="{option_id}"]')
    await expect(row.locator(".left-n")).to_have_text("5", timeout=20_000)
    await expect(page.locator("#strategy")).to_have_text(clean.settings.stock_strategy)
    await expect(page.locator("#drift")).to_have_text("0")
    await expect(page.locator("#oversold")).to_have_text("0")

    async with httpx.AsyncClient(base_url=live_shop.base_url) as api:
        bought = await api.post(
            "/api/orders",
            json=order_body((option_id, 2)),
            headers={**buyer, "Idempotency-Key": uuid.uuid4().hex},
        )
    assert bought.status_code == 201, bought.text

    await expect(row.locator(".sold-n")).to_have_text("2", timeout=20_000)
    await expect(row.locator(".left-n")).to_have_text("3")
    await expect(page.locator("#banner")).to_be_hidden()
    await page.screenshot(path=str(SCREENS / "dashboard.png"), full_page=True)

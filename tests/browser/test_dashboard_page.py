"""/admin/ in a real browser: an admin signs in, a small queued drop opens and sells through
the API, and the page follows it (countdown, units left, sold, queue, admissions)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import Browser, expect

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from tests.browser.conftest import SCREENS, LiveShop
from tests.conftest import TEST_PASSWORD
from tests.drops_helpers import announce
from tests.factories import make_option, make_user
from tests.orders_client import order_body

# Long enough for the worker's snapshot and the page's poll to show the countdown first.
STARTS_IN = timedelta(seconds=10)
UNITS = 3


async def _admission(api: httpx.AsyncClient, drop_id: int, buyer: dict[str, str]) -> str:
    """Poll the waiting room as a buyer's client does until it admits this buyer."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = await api.get(f"/api/drops/{drop_id}/queue", headers=buyer)
        assert answer.status_code == 200, answer.text
        ticket = answer.json()
        if ticket["status"] == "admitted":
            token: str = ticket["admission_token"]
            return token
        assert ticket["status"] in {"waiting", "not_open"}, ticket
        await asyncio.sleep(0.25)
    raise AssertionError("never admitted")


async def test_an_admin_watches_a_queued_drop_open_and_sell(
    live_shop: LiveShop, browser: Browser, clean: Container
) -> None:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    _, admin = await make_user(clean, role=Role.ADMIN, email=email)
    option_id = await make_option(clean, stock=UNITS)
    buyers = [headers for _, headers in [await make_user(clean) for _ in range(UNITS)]]

    page = await browser.new_page(viewport={"width": 1280, "height": 520})
    await page.goto(f"{live_shop.base_url}/admin/")
    await page.fill("#email", email)
    await page.fill("#password", TEST_PASSWORD)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#strategy")).to_have_text(
        clean.settings.stock_strategy, timeout=20_000
    )

    async with httpx.AsyncClient(base_url=live_shop.base_url, timeout=30) as api:
        drop = await announce(
            api,
            admin,
            [option_id],
            name="Browser drop",
            queue_enabled=True,
            admit_per_second=2,
            starts_at=datetime.now(UTC) + STARTS_IN,
        )
        for buyer in buyers:
            joined = await api.post(f"/api/drops/{drop['id']}/queue", headers=buyer)
            assert joined.json()["status"] == "waiting", joined.text

        # Before the start: a countdown, everything left, the whole queue waiting.
        card = page.locator(f'#drops .drop[data-drop-id="{drop["id"]}"]')
        countdown = card.locator(".countdown")
        await expect(countdown).to_have_text(re.compile(r"^starts in \d+ s$"), timeout=20_000)
        await expect(card.locator(".queue-n")).to_have_text(str(UNITS))
        await expect(card.locator(".admitted-n")).to_have_text("0")
        await expect(card.locator(".left-n")).to_have_text(str(UNITS))
        await expect(card.locator(".sold-n")).to_have_text("0")
        await expect(card.locator(".rate-n")).to_have_text("2/s")
        counting = await countdown.text_content()
        await expect(countdown).not_to_have_text(counting or "", timeout=5_000)
        await page.screenshot(path=str(SCREENS / "dashboard-countdown.png"), full_page=True)

        # The door opens: every buyer is admitted, all but one buy with their token.
        tokens = await asyncio.gather(*(_admission(api, drop["id"], b) for b in buyers))
        for buyer, token in list(zip(buyers, tokens, strict=True))[:-1]:
            bought = await api.post(
                "/api/orders",
                json=order_body((option_id, 1)),
                headers={**buyer, "Admission-Token": token, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert bought.status_code == 201, bought.text

    sold = UNITS - 1
    await expect(countdown).to_have_text("live", timeout=20_000)
    await expect(card.locator(".sold-n")).to_have_text(str(sold), timeout=20_000)
    await expect(card.locator(".left-n")).to_have_text("1")
    await expect(card.locator(".queue-n")).to_have_text("0")
    await expect(card.locator(".admitted-n")).to_have_text(str(UNITS))
    row = page.locator(f'#options tr[data-option-id="{option_id}"]')
    await expect(row.locator(".sold-n")).to_have_text(str(sold))
    await expect(row.locator(".left-n")).to_have_text("1")
    await expect(page.locator("#drift")).to_have_text("0")
    await expect(page.locator("#oversold")).to_have_text("0")
    await expect(page.locator("#banner")).to_be_hidden()
    await page.screenshot(path=str(SCREENS / "dashboard.png"), full_page=True)

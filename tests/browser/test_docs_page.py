"""/docs in a real browser: Swagger UI renders offline and its "Try it out" works."""

from __future__ import annotations

from playwright.async_api import Browser, Request

from tests.browser.conftest import SCREENS, LiveShop


async def test_the_docs_list_the_operations_and_try_it_out_gets_a_200(
    live_shop: LiveShop, browser: Browser
) -> None:
    page = await browser.new_page()
    outside: list[str] = []

    def watch(request: Request) -> None:
        if not request.url.startswith((live_shop.base_url, "data:")):
            outside.append(request.url)

    page.on("request", watch)
    await page.goto(f"{live_shop.base_url}/docs")
    operation = page.locator("#operations-catalog-ListProducts")
    await operation.wait_for(timeout=30_000)
    assert await page.locator(".opblock").count() > 20
    assert await page.locator("#operations-orders-PlaceOrder").count() == 1

    await operation.locator(".opblock-summary").click()
    await operation.get_by_role("button", name="Try it out").click()
    await operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    await status.wait_for(timeout=30_000)
    assert (await status.inner_text()).strip() == "200"
    await status.scroll_into_view_if_needed()
    await page.screenshot(path=str(SCREENS / "docs.png"), full_page=False)
    assert outside == [], outside

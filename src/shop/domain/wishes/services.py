"""Wish-list use cases: idempotent add and remove, a cap per customer, a paged list.

The list is per product; ``available`` is computed from the stock port at read time rather
than stored, so it can never disagree with what a buyer would be told at checkout.
"""

from __future__ import annotations

import uuid

from shop.domain.errors import Conflict, NotFound
from shop.domain.paging import (
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
    micros_of,
    moment_of,
)
from shop.domain.stock.ports import StockReservation
from shop.domain.wishes.model import Wish, WishEntry
from shop.domain.wishes.ports import Wishes

CURSOR_KIND = "wishes"


async def add_wish(
    wishes: Wishes, user_id: uuid.UUID, product_id: int, *, cap: int
) -> tuple[Wish, bool]:
    """Add the product to the customer's list. Returns the wish and whether this call created
    it: adding twice is still one wish, and it keeps its original date.

    The cap is checked on the locked list, so a burst of parallel adds cannot pass it, and a
    product already on the list is accepted even at the cap (it adds nothing)."""
    async with wishes.of(user_id) as wish_list:
        if not await wish_list.product_exists(product_id):
            raise NotFound(f"product {product_id} does not exist")
        existing = await wish_list.get(product_id)
        if existing is not None:
            return existing, False
        if await wish_list.count() >= cap:
            raise Conflict(
                f"a wish list holds at most {cap} products; remove one first",
                extra={"cap": cap},
            )
        return await wish_list.add(product_id), True


async def remove_wish(wishes: Wishes, user_id: uuid.UUID, product_id: int) -> None:
    """Idempotent: removing a wish that is not there (or a product that is gone) succeeds."""
    async with wishes.of(user_id) as wish_list:
        await wish_list.remove(product_id)


def cursor_after(wish: Wish) -> str:
    return encode_cursor(CURSOR_KIND, (micros_of(wish.wished_at), wish.product_id))


async def list_wishes(
    wishes: Wishes,
    stock: StockReservation,
    user_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
) -> Page[WishEntry]:
    check_limit(limit)
    after = None
    if cursor is not None:
        micros, product_id = decode_cursor(cursor, kind=CURSOR_KIND, size=2)
        if product_id < 1:
            raise invalid_cursor("the cursor is not one this server issued")
        after = (moment_of(micros), product_id)
    rows = await wishes.page(user_id, after=after, limit=limit + 1)
    shown = rows[:limit]
    option_ids = [option_id for row in shown for option_id in row.option_ids]
    available = await stock.available(option_ids) if option_ids else {}
    entries = [
        WishEntry(
            wish=row.wish,
            name=row.name,
            price=row.price,
            image_url=row.image_url,
            available=any(available.get(option_id, 0) > 0 for option_id in row.option_ids),
        )
        for row in shown
    ]
    # The extra row only proves a next page exists: the last page hands out no cursor.
    next_cursor = cursor_after(shown[-1].wish) if len(rows) > limit and shown else None
    return Page(items=entries, next_cursor=next_cursor)

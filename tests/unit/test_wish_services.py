"""Wish-list rules against an in-memory list: idempotency, the cap, availability."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from shop.domain.errors import Conflict, MalformedRequest, NotFound
from shop.domain.wishes.model import Wish, WishedProduct
from shop.domain.wishes.services import add_wish, list_wishes, remove_wish
from tests.unit.fakes import FakeStock

T0 = datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC)
PRODUCTS = {1: (101, 102), 2: (201,), 3: ()}  # product id -> option ids


@dataclass
class MemoryWishList:
    wishes: dict[int, Wish]

    async def product_exists(self, product_id: int) -> bool:
        return product_id in PRODUCTS

    async def get(self, product_id: int) -> Wish | None:
        return self.wishes.get(product_id)

    async def count(self) -> int:
        return len(self.wishes)

    async def add(self, product_id: int) -> Wish:
        wish = Wish(product_id, T0 + datetime.timedelta(seconds=len(self.wishes)))
        self.wishes[product_id] = wish
        return wish

    async def remove(self, product_id: int) -> None:
        self.wishes.pop(product_id, None)


@dataclass
class MemoryWishes:
    lists: dict[uuid.UUID, dict[int, Wish]] = field(default_factory=dict)

    @asynccontextmanager
    async def of(self, user_id: uuid.UUID) -> AsyncIterator[MemoryWishList]:
        yield MemoryWishList(self.lists.setdefault(user_id, {}))

    async def page(
        self, user_id: uuid.UUID, *, after: tuple[datetime.datetime, int] | None, limit: int
    ) -> Sequence[WishedProduct]:
        ordered = sorted(
            self.lists.get(user_id, {}).values(),
            key=lambda w: (-w.wished_at.timestamp(), w.product_id),
        )
        if after is not None:
            ordered = [w for w in ordered if (w.wished_at, -w.product_id) < (after[0], -after[1])]
        return [
            WishedProduct(w, f"p{w.product_id}", 100, None, PRODUCTS[w.product_id])
            for w in ordered[:limit]
        ]


USER = uuid.uuid4()


async def test_adding_twice_keeps_one_wish_and_its_first_date() -> None:
    wishes = MemoryWishes()
    first, created = await add_wish(wishes, USER, 1, cap=10)
    again, created_again = await add_wish(wishes, USER, 1, cap=10)
    assert (created, created_again) == (True, False)
    assert again == first


async def test_an_unknown_product_cannot_be_wished() -> None:
    with pytest.raises(NotFound):
        await add_wish(MemoryWishes(), USER, 99, cap=10)


async def test_the_cap_refuses_new_products_but_not_ones_already_wished() -> None:
    wishes = MemoryWishes()
    await add_wish(wishes, USER, 1, cap=2)
    await add_wish(wishes, USER, 2, cap=2)
    with pytest.raises(Conflict):
        await add_wish(wishes, USER, 3, cap=2)
    assert (await add_wish(wishes, USER, 2, cap=2))[1] is False


async def test_removing_what_is_not_there_succeeds() -> None:
    wishes = MemoryWishes()
    await remove_wish(wishes, USER, 1)
    await add_wish(wishes, USER, 1, cap=10)
    await remove_wish(wishes, USER, 1)
    assert wishes.lists[USER] == {}


async def test_available_means_some_option_can_still_be_bought() -> None:
    wishes = MemoryWishes()
    for product_id in (1, 2, 3):
        await add_wish(wishes, USER, product_id, cap=10)
    stock = FakeStock({101: 0, 102: 4, 201: 0})

    page = await list_wishes(wishes, stock, USER, limit=10)

    assert [(e.wish.product_id, e.available) for e in page.items] == [
        (3, False),
        (2, False),
        (1, True),
    ]
    assert page.next_cursor is None


async def test_pages_follow_each_other() -> None:
    wishes = MemoryWishes()
    for product_id in (1, 2, 3):
        await add_wish(wishes, USER, product_id, cap=10)
    stock = FakeStock({})
    first = await list_wishes(wishes, stock, USER, limit=2)
    assert first.next_cursor is not None
    second = await list_wishes(wishes, stock, USER, limit=2, cursor=first.next_cursor)
    assert [e.wish.product_id for e in first.items + second.items] == [3, 2, 1]
    assert second.next_cursor is None
    with pytest.raises(MalformedRequest):
        await list_wishes(wishes, stock, USER, limit=2, cursor="bogus")

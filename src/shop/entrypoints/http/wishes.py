"""Wish-list routes. Every route acts on the caller's own list (the user id comes from the
verified token only), so there is no way to name, read or change someone else's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from shop.bootstrap import Container
from shop.domain.identity.model import Principal
from shop.domain.paging import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT
from shop.domain.wishes import services
from shop.domain.wishes.model import Wish, WishEntry
from shop.entrypoints.http.bounds import PathId
from shop.entrypoints.http.openapi import raises


class WishOut(msgspec.Struct):
    product_id: int
    wished_at: datetime

    @classmethod
    def from_domain(cls, wish: Wish) -> WishOut:
        return cls(product_id=wish.product_id, wished_at=wish.wished_at)


class WishedProductOut(msgspec.Struct):
    """``available``: at least one option of the product can still be bought."""

    product_id: int
    wished_at: datetime
    name: str
    price: int
    image_url: str | None
    available: bool

    @classmethod
    def from_domain(cls, entry: WishEntry) -> WishedProductOut:
        return cls(
            product_id=entry.wish.product_id,
            wished_at=entry.wish.wished_at,
            name=entry.name,
            price=entry.price,
            image_url=entry.image_url,
            available=entry.available,
        )


class WishPage(msgspec.Struct):
    items: list[WishedProductOut]
    next_cursor: str | None


class WishController(Controller):
    path = "/api/wishes"
    tags = ["wishes"]

    @get(operation_id="ListWishes")
    async def listing(
        self,
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None,
            QueryParameter(
                description="next_cursor of the previous page", max_length=MAX_CURSOR_LENGTH
            ),
        ] = None,
    ) -> WishPage:
        """Newest wish first; pass ``next_cursor`` back as ``cursor`` for the next page."""
        page = await services.list_wishes(
            container.wishes, container.stock, principal.user_id, limit=limit, cursor=cursor
        )
        return WishPage(
            items=[WishedProductOut.from_domain(entry) for entry in page.items],
            next_cursor=page.next_cursor,
        )

    @put(
        "/{product_id:int}",
        operation_id="AddWish",
        status_code=201,
        responses=raises(409, also=(200, WishOut)),
    )
    async def add(
        self,
        product_id: PathId,
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
    ) -> Response[WishOut]:
        """201 the first time; 200 with the original wish when the product is already on it."""
        wish, created = await services.add_wish(
            container.wishes,
            principal.user_id,
            product_id,
            cap=container.wish_cap,
        )
        return Response(WishOut.from_domain(wish), status_code=201 if created else 200)

    @delete("/{product_id:int}", operation_id="RemoveWish")
    async def remove(
        self,
        product_id: PathId,
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
    ) -> None:
        """204 whether or not the product was on the list: removing is idempotent."""
        await services.remove_wish(container.wishes, principal.user_id, product_id)

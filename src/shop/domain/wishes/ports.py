"""Ports of the wish list. Adapters satisfy them structurally (no base classes)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from shop.domain.wishes.model import Wish, WishedProduct


class WishList(Protocol):
    """One customer's list inside a transaction that holds it against concurrent changes."""

    async def product_exists(self, product_id: int) -> bool: ...

    async def get(self, product_id: int) -> Wish | None: ...

    async def count(self) -> int: ...

    async def add(self, product_id: int) -> Wish: ...

    async def remove(self, product_id: int) -> None: ...


class Wishes(Protocol):
    def of(self, user_id: uuid.UUID) -> AbstractAsyncContextManager[WishList]:
        """The customer's list, locked until the block ends (then committed; rolled back if
        it raised). Two concurrent adds by one customer are serialised, so the cap holds."""
        ...

    async def page(
        self, user_id: uuid.UUID, *, after: tuple[datetime, int] | None, limit: int
    ) -> Sequence[WishedProduct]:
        """Up to ``limit`` wishes newest first (ties: lower product id first), strictly after
        ``after`` = (wished_at, product_id) of the last wish already shown."""
        ...

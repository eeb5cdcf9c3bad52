"""Ports of the orders module. Adapters satisfy them structurally (no base classes)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from shop.domain.orders.model import Order, OrderCursor, OrderPage, Quote


class Orders(Protocol):
    """The orders repository. Transitions go through ``locked`` so that two of them on one
    order (pay vs expire, cancel vs ship) are decided one after the other, never both."""

    def next_id(self) -> uuid.UUID:
        """A new order id, ordered by creation time."""
        ...

    async def quote(
        self, user_id: uuid.UUID, idempotency_key: str, option_ids: Sequence[int]
    ) -> Quote:
        """Catalog prices of the options (unknown ones are absent) and the order already placed
        under this key, if any — in one round trip, as this sits on the purchase hot path."""
        ...

    async def add(
        self,
        order: Order,
        *,
        stock_generation: str | None = None,
        open_order_cap: int | None = None,
    ) -> bool:
        """Write the order and its lines atomically, claiming its reservation key for it.
        With ``open_order_cap`` (an order in a drop), ``OpenOrderLimitExceeded`` (and nothing
        written) when the customer already has that many unpaid orders in ``order.drop_id``,
        decided atomically with the write: concurrent orders of one customer cannot both pass.
        ``False`` (and nothing written) when the key is already claimed: the customer already
        has an order under this Idempotency-Key, or the reservation was abandoned (claimed
        void), or ``stock_generation`` (``Reservation.generation``) names a store state that
        was lost since the reservation was taken. ``OptionWithdrawn`` (and nothing written)
        when an option's product was deleted since the quote."""
        ...

    async def abandon(self, reservation_key: str) -> bool:
        """Claim the reservation key for no order; ``True`` if no order holds it now or ever
        will (its units may go back on sale), ``False`` if an order holds it."""
        ...

    async def get(self, order_id: uuid.UUID) -> Order | None: ...

    async def find(self, user_id: uuid.UUID, idempotency_key: str) -> Order | None: ...

    async def page(self, user_id: uuid.UUID, *, limit: int, after: OrderCursor | None) -> OrderPage:
        """The customer's orders, newest first, without expired ones (keyset pagination)."""
        ...

    def locked(self, order_id: uuid.UUID) -> AbstractAsyncContextManager[Order]:
        """The order, locked against concurrent transitions until the block ends; its changes
        are committed when the block exits normally and discarded when it raises.
        Raises ``NotFound`` for an unknown id."""
        ...

    async def mark_stock_released(self, order_id: uuid.UUID, at: datetime) -> None: ...

    async def overdue(self, now: datetime, *, limit: int) -> Sequence[uuid.UUID]:
        """Unpaid orders whose deadline has passed (the expiry sweep's backlog), oldest
        deadline first. Runs every second: it must be served by an index, not a scan."""
        ...

    async def awaiting_release(self, *, limit: int) -> Sequence[Order]:
        """Cancelled or expired orders whose units the stock port has not yet taken back."""
        ...

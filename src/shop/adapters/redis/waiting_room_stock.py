"""``RoomStock``: the stock port, telling the waiting room what is left after every change.

It wraps the port every module uses. After a reserve of a drop's options (taken or refused),
and after every release or restock (whose options it does not know cheaply), it asks the
wrapped port what is left of each affected drop and stores it in the room (``left``): the
moment the last unit is reserved, the next poll says ``sold_out``; a unit that comes back
admits the next buyer in line. Failing to tell the room never fails the sale: the worker
refreshes every room periodically as the backstop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from shop.adapters.redis.waiting_room import RedisWaitingRoom
from shop.domain.stock.model import Line, PerBuyerLimit, Reservation
from shop.domain.stock.ports import StockReservation
from shop.logs import get_logger

_log = get_logger("shop.drops.room")
CACHE_SECONDS = 1.0


class RoomStock:
    """A ``StockReservation`` that keeps the waiting rooms' ``left`` current."""

    def __init__(self, inner: StockReservation, room: RedisWaitingRoom) -> None:
        self._inner = inner
        self._room = room
        # Which options are in a drop, read from the room at most once a second: a purchase
        # outside drops then costs nothing extra (a lookup here, no round trip), and a
        # drop's options are known within a second of its creation (long before its start).
        self._room_of_option: dict[int, int] = {}
        self._loaded_at = -CACHE_SECONDS
        self._publications = -1

    def __getattr__(self, name: str) -> Any:
        # Operator-side members of the wrapped strategy (``strategy``, ``home``, ``close``).
        return getattr(self._inner, name)

    @property
    def name(self) -> str:
        return self._inner.name

    async def _refresh(self, drop_ids: Iterable[int]) -> None:
        """Store what is left of each of ``drop_ids``."""
        for drop_id in drop_ids:
            options = await self._room.options_of(drop_id)
            if options:
                await self._room.refresh_left(drop_id, partial(self._left, options))

    async def _left(self, options: Sequence[int]) -> int:
        return sum((await self._inner.available(options)).values())

    async def _rooms(self) -> dict[int, int]:
        stale = time.monotonic() - self._loaded_at >= CACHE_SECONDS
        if stale or self._publications != self._room.publications:
            self._publications = self._room.publications
            self._room_of_option = await self._room.room_of_option()
            self._loaded_at = time.monotonic()
        return self._room_of_option

    async def _tell(self, option_ids: Sequence[int] | None) -> None:
        try:
            rooms = await self._rooms()
            if not rooms:
                return
            drops = (
                set(rooms.values())
                if option_ids is None
                else {rooms[o] for o in option_ids if o in rooms}
            )
            if drops:
                await self._refresh(drops)
        except Exception as exc:  # the sale stands; the worker's refresh catches up
            _log.warning("could not update the waiting room's stock", error=str(exc))

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        try:
            return await self._inner.reserve(
                lines, key=key, buyer=buyer, per_buyer_limit=per_buyer_limit
            )
        finally:
            await self._tell([line.option_id for line in lines])

    async def confirm(self, key: str) -> None:
        await self._inner.confirm(key)

    async def release(self, key: str) -> None:
        try:
            await self._inner.release(key)
        finally:
            await self._tell(None)

    async def put_on_sale(self, option_id: int, units: int, *, key: str | None = None) -> None:
        try:
            await self._inner.put_on_sale(option_id, units, key=key)
        finally:
            await self._tell([option_id])

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        return await self._inner.available(option_ids)

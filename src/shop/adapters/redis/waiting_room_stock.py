"""``RoomStock``: the stock port, telling the waiting room what is left after every change.

It wraps the port every module uses.

- A reservation of a drop's options that goes through is told to the room as what it took
  (``RedisWaitingRoom.took``): one script lowers ``left`` and ends the buyer's hold, so the
  room never counts a unit as both free and reserved, with no reading of the stock port on
  the purchase path. The moment the last unit is reserved, the next poll says ``sold_out``.
- A reservation refused because an option is sold out ends the buyer's hold (it goes to the
  next in line) and stores a fresh reading of what is left.
- After every release or restock (whose options it does not know cheaply) it stores a fresh
  reading for every room: a unit that comes back admits the next buyer in line.

Failing to tell the room never fails the sale: the worker refreshes every room periodically
as the backstop (until then a failed ``took`` leaves ``left`` high by what it took).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from shop.adapters.redis.waiting_room import RedisWaitingRoom
from shop.domain.errors import SoldOut
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

    async def _left_of(self, drop_id: int) -> int:
        return await self._left(await self._room.options_of(drop_id))

    async def _left(self, options: Sequence[int]) -> int:
        return sum((await self._inner.available(options)).values())

    async def _rooms(self) -> dict[int, int]:
        stale = time.monotonic() - self._loaded_at >= CACHE_SECONDS
        if stale or self._publications != self._room.publications:
            self._publications = self._room.publications
            self._room_of_option = await self._room.room_of_option()
            self._loaded_at = time.monotonic()
        return self._room_of_option

    async def _drops_of(self, lines: Sequence[Line]) -> dict[int, int]:
        """Units per drop among ``lines`` (options outside drops left out)."""
        rooms = await self._rooms()
        units: dict[int, int] = {}
        for line in lines:
            drop = rooms.get(line.option_id)
            if drop is not None:
                units[drop] = units.get(drop, 0) + line.quantity
        return units

    async def _marks(self, drops: Mapping[int, int], buyer: str | None) -> dict[int, int]:
        """Each drop's refresh mark before a reservation (``RedisWaitingRoom.took``); the
        buyer's hold is kept until then."""
        try:
            return {d: await self._room.reserving(d, buyer or "") for d in drops}
        except Exception:  # no mark: ``took`` then reads the stock port again
            return {}

    async def _took(
        self, drops: Mapping[int, int], buyer: str | None, marks: dict[int, int]
    ) -> None:
        try:
            for drop_id, units in drops.items():
                await self._room.took(
                    drop_id,
                    buyer or "",
                    units,
                    mark=marks.get(drop_id, -1),
                    read=partial(self._left_of, drop_id),
                )
        except Exception as exc:  # the sale stands; the worker's refresh catches up
            _log.warning("could not update the waiting room's stock", error=str(exc))

    async def _refused(self, lines: Sequence[Line], buyer: str | None) -> None:
        try:
            for drop_id in await self._drops_of(lines):
                if buyer is not None:
                    await self._room.refused(drop_id, buyer)
                await self._refresh([drop_id])
        except Exception as exc:
            _log.warning("could not update the waiting room's stock", error=str(exc))

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
        # The purchase's units per drop, once: most purchases are outside drops (empty).
        try:
            drops = await self._drops_of(lines)
        except Exception:  # the room's map unreadable: the sale stands, the refresh catches up
            drops = {}
        marks = await self._marks(drops, buyer) if drops else {}
        try:
            reservation = await self._inner.reserve(
                lines, key=key, buyer=buyer, per_buyer_limit=per_buyer_limit
            )
        except SoldOut:
            await self._refused(lines, buyer)
            raise
        except BaseException:
            await self._tell([line.option_id for line in lines])
            raise
        # A retry of the same key takes nothing more, yet is subtracted again: ``left`` is
        # then low (never high) until the next refresh.
        if drops:
            await self._took(drops, buyer, marks)
        return reservation

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

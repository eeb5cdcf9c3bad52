"""``DropsOnSale`` from the drops module: the drops not ended yet, with their waiting rooms'
figures, for the sale snapshot (dashboard panel and ``shop_drop_*`` gauges)."""

from __future__ import annotations

from collections.abc import Sequence

from shop.adapters.redis.waiting_room import RedisWaitingRoom
from shop.domain.clock import Clock
from shop.domain.drops.ports import Drops
from shop.domain.drops.services import drop_status
from shop.domain.observation.model import DropFigures
from shop.domain.stock.ports import StockReservation

LISTED = 20


class RoomDropsOnSale:
    """The observation port, read from the drops repository and the Redis rooms."""

    enabled = True

    def __init__(
        self, drops: Drops, room: RedisWaitingRoom, stock: StockReservation, clock: Clock
    ) -> None:
        self._drops = drops
        self._room = room
        self._stock = stock
        self._clock = clock

    async def live(self) -> Sequence[DropFigures]:
        figures = []
        for drop in await self._drops.current(self._clock.now(), limit=LISTED):
            waiting, _ = await self._room.counts(drop.id)
            rules = drop.rules
            figures.append(
                DropFigures(
                    drop_id=drop.id,
                    name=rules.name,
                    starts_at=rules.starts_at.timestamp(),
                    ends_at=None if rules.ends_at is None else rules.ends_at.timestamp(),
                    option_ids=rules.option_ids,
                    queue_length=waiting,
                    admitted=await self._room.admitted_total(drop.id),
                    admission_rate=float(rules.queue.admit_per_second)
                    if rules.queue.enabled
                    else 0.0,
                    status=await drop_status(drop, stock=self._stock, clock=self._clock),
                )
            )
        return figures

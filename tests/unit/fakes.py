"""In-memory stand-ins for the domain's ports, one per port (unit tests only: no I/O).

They keep the contracts the real adapters keep (idempotent reserve per key, release returning
units once, a restock key putting units on sale once, commit-or-discard around ``locked``), and
nothing more.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shop.domain.errors import (
    InvalidInput,
    NotFound,
    OpenOrderLimitExceeded,
    PurchaseLimitExceeded,
    ReservationLost,
    SoldOut,
)
from shop.domain.observation.model import PurchaseOutcome, SaleSnapshot
from shop.domain.observation.ports import Dependency
from shop.domain.orders.model import (
    OptionPrice,
    Order,
    OrderCursor,
    OrderPage,
    OrderStatus,
    Quote,
    reservation_key,
)
from shop.domain.stock.model import (
    Line,
    PerBuyerLimit,
    Reservation,
    ReservationStatus,
    SweepOutcome,
    limit_for,
    merge_lines,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@dataclass
class FakeScheduler:
    scheduled: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)

    async def expire_at(self, order_id: uuid.UUID, when: datetime) -> None:
        self.scheduled.append((order_id, when))


@dataclass
class _Held:
    lines: tuple[Line, ...]
    buyer: str | None
    status: ReservationStatus = ReservationStatus.PENDING


class FakeStock:
    """The whole ``StockReservation`` port over a dict of units available per option."""

    name = "fake"

    def __init__(self, units: Mapping[int, int] | None = None) -> None:
        self.units = dict(units or {})
        self.reservations: dict[str, _Held] = {}
        self.restocks: dict[str, tuple[int, int]] = {}
        self.calls: list[tuple[int, int]] = []  # (option_id, units) of every put_on_sale
        self.reserve_calls = 0
        self.failing_release = False

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        self.reserve_calls += 1
        merged = merge_lines(lines)
        if key in self.reservations:
            return Reservation(key, self.reservations[key].lines)
        for line in merged:
            if self.units.get(line.option_id, 0) < line.quantity:
                raise SoldOut(line.option_id, requested=line.quantity)
        if buyer is not None and per_buyer_limit is not None:
            for line in merged:
                limit = limit_for(per_buyer_limit, line.option_id)
                if limit is None:
                    continue
                held = sum(
                    held_line.quantity
                    for r in self.reservations.values()
                    if r.buyer == buyer and r.status != ReservationStatus.RELEASED
                    for held_line in r.lines
                    if held_line.option_id == line.option_id
                )
                if held + line.quantity > limit:
                    raise PurchaseLimitExceeded(line.option_id, limit=limit)
        for line in merged:
            self.units[line.option_id] -= line.quantity
        self.reservations[key] = _Held(merged, buyer)
        return Reservation(key, merged)

    async def confirm(self, key: str) -> None:
        held = self.reservations.get(key)
        if held is None or held.status == ReservationStatus.RELEASED:
            raise ReservationLost(key)
        held.status = ReservationStatus.CONFIRMED

    async def release(self, key: str) -> None:
        if self.failing_release:
            raise ConnectionError("stock backend unreachable")
        held = self.reservations.get(key)
        if held is None or held.status == ReservationStatus.RELEASED:
            return
        held.status = ReservationStatus.RELEASED
        for line in held.lines:
            self.units[line.option_id] += line.quantity

    async def put_on_sale(self, option_id: int, units: int, *, key: str | None = None) -> None:
        self.calls.append((option_id, units))
        if key is not None:
            if key in self.restocks:
                if self.restocks[key] != (option_id, units):
                    raise InvalidInput("this Idempotency-Key was already used")
                return
            self.restocks[key] = (option_id, units)
        self.units[option_id] = self.units.get(option_id, 0) + units

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        return {option_id: self.units.get(option_id, 0) for option_id in option_ids}


class FakeOrders:
    """A dict of orders; ``locked`` hands out a copy and stores it back only on success."""

    def __init__(self, prices: Mapping[int, int]) -> None:
        self.prices = {
            option_id: OptionPrice(option_id, product_id=option_id * 10, price=price)
            for option_id, price in prices.items()
        }
        self.rows: dict[uuid.UUID, Order] = {}
        self.failing_add: Exception | None = None
        self.before_add: list[Order] = []
        # reservation key -> "order" | "void": who may use the reservation, decided once.
        self.claims: dict[str, str] = {}
        # option id -> the drop it sells in (what ``option.drop_id`` says).
        self.drop_of_option: dict[int, int] = {}

    def next_id(self) -> uuid.UUID:
        return uuid.uuid4()

    async def quote(
        self, user_id: uuid.UUID, idempotency_key: str, option_ids: Sequence[int]
    ) -> Quote:
        existing = await self.find(user_id, idempotency_key)
        return Quote(
            prices={i: self.prices[i] for i in option_ids if i in self.prices},
            existing_order_id=None if existing is None else existing.id,
            abandoned=self.claims.get(reservation_key(user_id, idempotency_key)) == "void",
            drop_of_option={i: d for i, d in self.drop_of_option.items() if i in option_ids},
        )

    async def add(
        self,
        order: Order,
        *,
        stock_generation: str | None = None,
        open_order_cap: int | None = None,
    ) -> bool:
        if open_order_cap is not None and order.drop_id is not None:
            unpaid = [
                o
                for o in self.rows.values()
                if o.user_id == order.user_id
                and o.drop_id == order.drop_id
                and o.status in OrderStatus.UNPAID
            ]
            if len(unpaid) >= open_order_cap:
                raise OpenOrderLimitExceeded(order.drop_id, open_order_cap)
        for twin in self.before_add:  # a racing request that wrote first
            self.rows[twin.id] = twin
            self.claims[twin.reservation_key] = "order"
        self.before_add.clear()
        if self.failing_add is not None:
            raise self.failing_add
        if order.reservation_key in self.claims:
            return False
        self.claims[order.reservation_key] = "order"
        self.rows[order.id] = copy.deepcopy(order)
        return True

    async def abandon(self, reservation_key: str) -> bool:
        return self.claims.setdefault(reservation_key, "void") == "void"

    async def get(self, order_id: uuid.UUID) -> Order | None:
        found = self.rows.get(order_id)
        return None if found is None else copy.deepcopy(found)

    async def find(self, user_id: uuid.UUID, idempotency_key: str) -> Order | None:
        for order in self.rows.values():
            if order.user_id == user_id and order.idempotency_key == idempotency_key:
                return copy.deepcopy(order)
        return None

    async def page(self, user_id: uuid.UUID, *, limit: int, after: OrderCursor | None) -> OrderPage:
        mine = sorted(
            (
                o
                for o in self.rows.values()
                if o.user_id == user_id and o.status is not OrderStatus.EXPIRED
            ),
            key=lambda o: (o.created_at, o.id),
            reverse=True,
        )
        if after is not None:
            mine = [o for o in mine if (o.created_at, o.id) < (after.created_at, after.order_id)]
        items = tuple(mine[:limit])
        more = len(mine) > limit
        cursor = OrderCursor(items[-1].created_at, items[-1].id) if more else None
        return OrderPage(items=items, next_cursor=cursor)

    @asynccontextmanager
    async def locked(self, order_id: uuid.UUID) -> AsyncIterator[Order]:
        if order_id not in self.rows:
            raise NotFound("order not found")
        working = copy.deepcopy(self.rows[order_id])
        yield working
        self.rows[order_id] = copy.deepcopy(working)

    async def mark_stock_released(self, order_id: uuid.UUID, at: datetime) -> None:
        if self.rows[order_id].stock_released_at is None:
            self.rows[order_id].stock_released_at = at

    async def overdue(self, now: datetime, *, limit: int) -> Sequence[uuid.UUID]:
        due = [o for o in self.rows.values() if o.is_overdue(now)]
        return [o.id for o in sorted(due, key=lambda o: o.pay_by)][:limit]

    async def awaiting_release(self, *, limit: int) -> Sequence[Order]:
        return [copy.deepcopy(o) for o in self.rows.values() if o.awaits_stock_release][:limit]


class RecordingObserver:
    """``SaleObserver`` that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.purchases: list[PurchaseOutcome] = []
        self.snapshots: list[SaleSnapshot] = []
        self.events: list[tuple[str, object]] = []

    def purchase(self, outcome: PurchaseOutcome) -> None:
        self.purchases.append(outcome)

    def request_served(self, route: str, method: str, status: int, seconds: float) -> None:
        self.events.append(("request", (route, method, status)))

    def reservations_swept(self, outcome: SweepOutcome) -> None:
        self.events.append(("swept", outcome))

    def orders_expired(self, count: int) -> None:
        self.events.append(("expired", count))

    def payment_event(self, event_type: str) -> None:
        self.events.append(("payment", event_type))

    def stock_synced(self, options: int, at: float) -> None:
        self.events.append(("synced", (options, at)))

    def dependency_error(self, dependency: Dependency) -> None:
        self.events.append(("dependency", dependency))

    def sale_observed(self, snapshot: SaleSnapshot) -> None:
        self.snapshots.append(snapshot)


class FakeSnapshots:
    """``SaleSnapshots`` in a list, newest first."""

    def __init__(self) -> None:
        self.kept: list[SaleSnapshot] = []

    async def record(self, snapshot: SaleSnapshot) -> None:
        self.kept.insert(0, snapshot)

    async def recent(self, limit: int) -> Sequence[SaleSnapshot]:
        return self.kept[:limit]

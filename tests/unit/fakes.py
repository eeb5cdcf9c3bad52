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
from dataclasses import dataclass
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
    HeldReservation,
    Line,
    OptionStock,
    PerBuyerLimit,
    Reservation,
    ReservationStatus,
    StockRebuild,
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


def clock_ahead(seconds: float) -> FakeClock:
    """The real time moved ``seconds`` ahead: a sweep against real stores that sees their
    reservations as that much older."""
    return FakeClock(datetime.now(UTC) + timedelta(seconds=seconds))


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
        # (operation, key) of every confirm and release, and of every retire through
        # ``FakeStockOperations``: what a rule asked of the stock, in order.
        self.log: list[tuple[str, str]] = []

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
        self.log.append(("confirm", key))
        held = self.reservations.get(key)
        if held is None or held.status == ReservationStatus.RELEASED:
            raise ReservationLost(key)
        held.status = ReservationStatus.CONFIRMED

    async def release(self, key: str) -> None:
        self.log.append(("release", key))
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


class FakeStockOperations:
    """The ``StockOperations`` port over a ``FakeStock``: the reservations it is given, with
    their store-side ages, a drift report that a repair clears, and a log of retirements."""

    def __init__(
        self,
        stock: FakeStock,
        held: Sequence[HeldReservation] = (),
        drift: Sequence[OptionStock] = (),
    ) -> None:
        self.stock = stock
        self.held = {reservation.key: reservation for reservation in held}
        for reservation in held:
            stock.reservations[reservation.key] = _Held(
                reservation.lines, reservation.buyer, ReservationStatus(reservation.status)
            )
            for line in reservation.lines:  # held units are already out of ``units``
                stock.units.setdefault(line.option_id, 0)
        self.drifting = list(drift)
        self.repaired = False
        self.calls = stock.log

    async def active_strategy(self) -> str:
        return self.stock.name

    async def use(self, name: str) -> str:
        return self.stock.name

    async def status(self, option_ids: Sequence[int] | None = None) -> Sequence[OptionStock]:
        return [] if self.repaired else self.drifting

    async def repair(self) -> Sequence[OptionStock]:
        self.repaired = True
        return self.drifting

    async def last_rebuild(self) -> StockRebuild | None:
        return None

    async def sync(self) -> int:
        return 0

    async def open_reservations(self) -> Sequence[HeldReservation]:
        """The given reservations the stock still holds units for."""
        return [
            reservation
            for key, reservation in self.held.items()
            if self.stock.reservations[key].status in ReservationStatus.OPEN
        ]

    async def retire(self, keys: Sequence[str]) -> None:
        self.calls.extend(("retire", key) for key in keys)


class FakeOrderStates:
    """The ``OrderStates`` port: order status per reservation key, and the void claim."""

    def __init__(self, states: Mapping[str, str]) -> None:
        self.states = dict(states)
        self.void: set[str] = set()

    async def states_of(self, keys: Sequence[str]) -> Mapping[str, str]:
        return {key: self.states[key] for key in keys if key in self.states}

    async def abandon(self, key: str) -> bool:
        if key in self.states:
            return False
        self.void.add(key)
        return True


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

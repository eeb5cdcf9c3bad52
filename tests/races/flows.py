"""Simulated processes that stop where the machine says: the tool behind the fault tests.

A purchase or a sweep runs the real use case on the real adapters, but as a *flow*: an
asyncio task that parks after each step that reaches a store (a reservation taken, an order
written, order states read). While it is parked, anything else may happen — another process
retries the same purchase, the sweep decides, Redis loses its data, the strategy switches —
and then the flow is either let go to its next stop or killed. Killing cancels the task at
its stop: like a process dying, no ``except Exception`` clean-up runs. Every interleaving a
real deployment can produce between two store calls can be written this way, one step at a
time, and replayed exactly (which is what makes hypothesis' shrinking work).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from shop.adapters.db.orders import SqlOrders
from shop.bootstrap import Container
from shop.domain.orders.model import Order, PaymentMethod, Placed, PlaceOrder
from shop.domain.orders.services import place_order
from shop.domain.stock.model import Line, PerBuyerLimit, Reservation, SweepOutcome
from shop.domain.stock.ports import OrderStates, StockReservation
from shop.domain.stock.services import sweep_reservations
from tests.unit.fakes import clock_ahead

WriteFault = Literal["none", "before", "after"]


class InjectedWriteError(RuntimeError):
    """The order write failed (``before``: nothing written; ``after``: committed, but the
    answer was lost on the way back, as when a connection drops after COMMIT)."""


@dataclass(eq=False)
class Flow:
    """One simulated process running one use case; see the module docstring."""

    name: str
    task: asyncio.Task[Any] | None = None
    point: str | None = None
    write_fault: WriteFault = "none"
    _go: asyncio.Event = field(default_factory=asyncio.Event)
    _parked: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def parked(self) -> bool:
        return self.point is not None and self.task is not None and not self.task.done()

    async def stop_here(self, point: str) -> None:
        """Called by the gated ports: wait here until the machine lets this flow go on."""
        self.point = point
        self._parked.set()
        await self._go.wait()
        self._go.clear()
        self.point = None

    async def run_to_next_stop(self) -> None:
        """Let the flow go and wait until it parks again or finishes."""
        assert self.task is not None
        self._parked.clear()
        self._go.set()
        await self._settle()

    async def _settle(self) -> None:
        assert self.task is not None
        parked = asyncio.ensure_future(self._parked.wait())
        try:
            await asyncio.wait({self.task, parked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            parked.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await parked

    async def kill(self) -> None:
        """The process dies where it stands: no clean-up handler of the use case runs."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task

    def start(self, work: Awaitable[Any]) -> None:
        self.task = asyncio.ensure_future(work)

    async def started(self, work: Awaitable[Any]) -> Flow:
        self.start(work)
        await self._settle()
        return self

    def outcome(self) -> Any:
        """The use case's result, or the exception it ended with."""
        assert self.task is not None and self.task.done()
        if self.task.cancelled():
            return asyncio.CancelledError()
        return self.task.exception() or self.task.result()


class GatedStock:
    """The real stock port, with a step run after each reservation it takes: a flow's stop,
    or any action of the test (``stop`` is called with the point's name)."""

    def __init__(self, inner: StockReservation, stop: Callable[[str], Awaitable[None]]) -> None:
        self._inner = inner
        self._stop = stop

    @property
    def name(self) -> str:
        return self._inner.name

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        reservation = await self._inner.reserve(
            lines, key=key, buyer=buyer, per_buyer_limit=per_buyer_limit
        )
        await self._stop("reserved")
        return reservation

    async def confirm(self, key: str) -> None:
        await self._inner.confirm(key)

    async def release(self, key: str) -> None:
        await self._inner.release(key)

    async def put_on_sale(self, option_id: int, units: int, *, key: str | None = None) -> None:
        await self._inner.put_on_sale(option_id, units, key=key)

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        return await self._inner.available(option_ids)


class GatedOrders(SqlOrders):
    """The real orders repository; the flow stops after writing an order and after looking
    one up, and the write can be made to fail before or after its commit."""

    def __init__(self, engine: AsyncEngine, flow: Flow) -> None:
        super().__init__(engine)
        self._flow = flow

    async def add(
        self,
        order: Order,
        *,
        stock_generation: str | None = None,
        open_order_cap: int | None = None,
    ) -> bool:
        if self._flow.write_fault == "before":
            raise InjectedWriteError("the order write failed before reaching the database")
        written = await super().add(
            order, stock_generation=stock_generation, open_order_cap=open_order_cap
        )
        if self._flow.write_fault == "after":
            raise InjectedWriteError("the order was committed but the answer was lost")
        await self._flow.stop_here("written")
        return written

    async def find(self, user_id: uuid.UUID, idempotency_key: str) -> Order | None:
        found = await super().find(user_id, idempotency_key)
        await self._flow.stop_here("looked up")
        return found


class GatedOrderStates:
    """The sweep's view of the orders; the flow stops once it has read them, before acting."""

    def __init__(self, inner: OrderStates, flow: Flow) -> None:
        self._inner = inner
        self._flow = flow

    async def states_of(self, keys: Sequence[str]) -> Mapping[str, str]:
        states = await self._inner.states_of(keys)
        await self._flow.stop_here("states read")
        return states

    async def abandon(self, key: str) -> bool:
        return await self._inner.abandon(key)


def purchase(
    user_id: uuid.UUID, key: str, lines: Sequence[Line], *, address: str = "1 Test Street"
) -> PlaceOrder:
    return PlaceOrder(
        user_id=user_id,
        idempotency_key=key,
        lines=tuple(lines),
        payment_method=PaymentMethod.CARD,
        shipping_address=address,
    )


async def start_purchase(container: Container, cmd: PlaceOrder, *, name: str = "") -> Flow:
    """Start ``place_order`` as a flow; it runs until its first stop (or its end)."""
    flow = Flow(name or f"buy {cmd.idempotency_key}")
    work: Awaitable[Placed] = place_order(
        cmd,
        rules=container.order_rules,
        stock=GatedStock(container.stock, flow.stop_here),
        orders=GatedOrders(container.engine, flow),
        clock=container.clock,
    )
    return await flow.started(work)


async def start_sweep(container: Container, *, late_by: float) -> Flow:
    """Start the reservation sweep as a flow, its clock ``late_by`` seconds ahead."""
    flow = Flow("sweep")
    work: Awaitable[SweepOutcome] = sweep_reservations(
        stock=container.stock,
        operations=container.stock_operations,
        orders=GatedOrderStates(container.order_states, flow),
        pending_timeout=container.settings.reservation_timeout,
        clock=clock_ahead(late_by),
    )
    return await flow.started(work)


async def finish(flow: Flow) -> Any:
    """Let the flow run through every remaining stop; returns its outcome."""
    while flow.parked:
        await flow.run_to_next_stop()
    return flow.outcome()

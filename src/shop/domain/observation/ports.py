"""Ports of observation. The domain reports what happened through ``SaleObserver`` and never
imports a metrics library; bootstrap decides what listens (Prometheus today)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from shop.domain.observation.model import DropFigures, PurchaseOutcome, SaleSnapshot
from shop.domain.stock.model import SweepOutcome

Dependency = Literal["postgres", "redis", "other"]


class SaleObserver(Protocol):
    """Told about every event an operator counts. Calls are synchronous and must be cheap
    (they sit on the purchase path) and must never raise: observing cannot fail a sale."""

    def purchase(self, outcome: PurchaseOutcome) -> None: ...

    def request_served(self, route: str, method: str, status: int, seconds: float) -> None: ...

    def reservations_swept(self, outcome: SweepOutcome) -> None: ...

    def orders_expired(self, count: int) -> None: ...

    def payment_event(self, event_type: str) -> None:
        """One processed payment-gateway event (``payment.succeeded``, …): the webhook's
        hook point, called once per event id actually applied."""
        ...

    def stock_synced(self, options: int, at: float) -> None: ...

    def dependency_error(self, dependency: Dependency) -> None: ...

    def sale_observed(self, snapshot: SaleSnapshot) -> None: ...


class OptionsOnSale(Protocol):
    """Which options are "on sale now": the ones the invariant gauges and the dashboard
    follow. Today: the options bought recently; with drops, the options of live drops."""

    async def on_sale_now(self) -> Sequence[int]: ...


class PurchaseTally(Protocol):
    """How many purchases were ever written, as one cheap, monotonic number (so a rate
    needs no counter shared between processes: two readings a second apart suffice)."""

    async def lines_written(self) -> int: ...


class DropsOnSale(Protocol):
    """The drops (scheduled sales) the snapshot reports: countdown, queue length,
    admissions. ``enabled`` is false for a shop wired without a drops source: the dashboard then
    says so instead of showing an empty list as if no drop were planned."""

    @property
    def enabled(self) -> bool: ...

    async def live(self) -> Sequence[DropFigures]: ...


class SaleSnapshots(Protocol):
    """The recent snapshots, shared by every process (the worker writes, the web reads)."""

    async def record(self, snapshot: SaleSnapshot) -> None: ...

    async def recent(self, limit: int) -> Sequence[SaleSnapshot]:
        """Newest first."""
        ...


class MetricsExposition(Protocol):
    """The ``/metrics`` body: every process's counts plus the snapshot's gauges."""

    @property
    def content_type(self) -> str: ...

    def render(self, snapshot: SaleSnapshot | None) -> bytes: ...

"""The ``SaleObserver`` port on prometheus-client, correct across processes.

``shop up`` runs N granian workers and a SAQ worker; each counts in its own memory, so a
scrape answered by one worker would see a fraction of the sale. prometheus-client's
multiprocess mode makes every process write its samples to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` and the scraped process add them all up (counters and
histograms of processes that died are kept: counts are never lost). The directory must be
empty when the shop starts (``prepare_multiprocess_dir``), and the variable must be set
before ``prometheus_client`` is imported: ``shop up`` puts it in its children's environment.
Without it (a bare ``granian`` run), each process reports only itself.

The invariant gauges (units on sale, sold, held, left, drift, oversold per option) are not
samples of any process: they are rendered at scrape time from the latest sale snapshot the
worker recorded, so a scrape costs one Redis read and never a ledger query.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from shop.domain.observation.model import PurchaseOutcome, SaleSnapshot
from shop.domain.observation.ports import Dependency
from shop.domain.stock.model import SweepOutcome

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

if os.environ.get(MULTIPROC_ENV):
    # The files are opened as the metrics below are built: a configured but missing
    # directory (a fresh container, a typo'd path) must not crash every command.
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)

# Samples of this process; in multiprocess mode they go to the shared files instead.
_REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_DURATION = Histogram(
    "shop_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template (not raw path), method and status.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=_REGISTRY,
)
PURCHASES = Counter(
    "shop_purchases",
    "Purchases (POST /api/orders) by outcome and the stock strategy that decided them.",
    ["outcome", "strategy"],
    registry=_REGISTRY,
)
SWEEPS = Counter("shop_reservation_sweeps", "Runs of the reservation sweep.", registry=_REGISTRY)
SWEPT = Counter(
    "shop_reservations_swept",
    "Reservations the sweep settled, by what it did (confirmed, released, retired).",
    ["action"],
    registry=_REGISTRY,
)
EXPIRED = Counter(
    "shop_orders_expired", "Unpaid orders expired past their deadline.", registry=_REGISTRY
)
PAYMENTS = Counter(
    "shop_payment_events",
    "Payment-gateway events applied, by event type (payment.succeeded, …).",
    ["event"],
    registry=_REGISTRY,
)
DEPENDENCY_ERRORS = Counter(
    "shop_dependency_errors",
    "Requests failed because PostgreSQL or Redis could not be reached.",
    ["dependency"],
    registry=_REGISTRY,
)
SYNCS = Counter(
    "shop_stock_syncs", "Runs of the counter write-back to option.stock.", registry=_REGISTRY
)
LAST_SYNC = Gauge(
    "shop_stock_sync_last_success_timestamp_seconds",
    "When the counter write-back to option.stock last succeeded (epoch seconds).",
    registry=_REGISTRY,
    multiprocess_mode="max",
)
SYNC_LAG = Gauge(
    "shop_stock_sync_lag_seconds",
    "Seconds since the last write-back, as of the latest sale snapshot (option.stock may "
    "be this far behind the Redis counter).",
    registry=_REGISTRY,
    multiprocess_mode="mostrecent",
)

SWEEP_ACTIONS = ("confirmed", "released", "retired")  # the fields of SweepOutcome
# The gateway's event types (DESIGN.md §6); others are counted as they come.
PAYMENT_EVENTS = ("payment.succeeded", "payment.failed", "refund.succeeded", "refund.failed")

# (name, help, field of OptionFigures)
OPTION_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("shop_stock_on_sale_units", "Units ever put on sale (stock_total).", "on_sale"),
    ("shop_stock_sold_units", "Units in live orders.", "sold"),
    (
        "shop_stock_held_units",
        "Units reserved by purchases whose order is not written yet.",
        "held",
    ),
    ("shop_stock_left_units", "Units the ledger says are left to sell.", "left"),
    ("shop_stock_drift_units", "Selling store minus ledger; must be 0.", "drift"),
    ("shop_stock_oversold_units", "Units sold beyond stock_total; must be 0.", "oversold"),
)


# Per drop (the live drops ``DropsOnSale`` reports).
DROP_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("shop_drop_queue_length", "Buyers waiting in the drop's queue.", "queue_length"),
    ("shop_drop_admitted", "Buyers admitted from the queue so far.", "admitted"),
    ("shop_drop_admission_rate", "Admissions per second (the drop's setting).", "admission_rate"),
    ("shop_drop_starts_at_timestamp_seconds", "When the drop opens (epoch seconds).", "starts_at"),
)


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create ``path`` and empty it: samples left by an earlier run would be added to this
    one's (a counter would start at yesterday's total)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def _multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: SaleSnapshot | None, now: float) -> None:
        self._snapshot = snapshot
        self._now = now

    def collect(self) -> Iterable[Metric]:
        snapshot = self._snapshot
        age = GaugeMetricFamily(
            "shop_sale_snapshot_age_seconds",
            "Age of the latest sale snapshot the gauges below come from.",
        )
        if snapshot is not None:
            age.add_metric([], max(0.0, self._now - snapshot.taken_at))
        yield age
        for name, documentation, field in OPTION_GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["option_id"])
            for option in snapshot.options if snapshot else ():
                family.add_metric([str(option.option_id)], getattr(option, field))
            yield family
        for name, documentation, field in DROP_GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=["drop_id"])
            for drop in snapshot.drops if snapshot else ():
                family.add_metric([str(drop.drop_id)], getattr(drop, field))
            yield family


class PrometheusObserver:
    """``SaleObserver`` writing prometheus-client samples; ``strategy`` names the stock
    strategy selling now (read at each purchase; SwitchableStock caches it)."""

    def __init__(self, strategy: Callable[[], str]) -> None:
        self._strategy = strategy
        self._last_sync: float | None = None
        self._durations: dict[tuple[str, str, int], Histogram] = {}
        # Every known label set starts at 0, so a family is visible (and rate() works) before
        # its first event: an alert on errors must not wait for the first error to exist.
        for outcome in PurchaseOutcome:
            PURCHASES.labels(outcome.value, strategy())
        for action in SWEEP_ACTIONS:
            SWEPT.labels(action)
        for event in PAYMENT_EVENTS:
            PAYMENTS.labels(event)
        for dependency in get_args(Dependency):
            DEPENDENCY_ERRORS.labels(dependency)

    def purchase(self, outcome: PurchaseOutcome) -> None:
        PURCHASES.labels(outcome.value, self._strategy()).inc()

    def request_served(self, route: str, method: str, status: int, seconds: float) -> None:
        # On every request's path: the labelled child is looked up once per label set
        # (bounded: route templates × methods × statuses), not per request.
        key = (route, method, status)
        child = self._durations.get(key)
        if child is None:
            child = self._durations[key] = HTTP_DURATION.labels(route, method, str(status))
        child.observe(seconds)

    def reservations_swept(self, outcome: SweepOutcome) -> None:
        SWEEPS.inc()
        for action in SWEEP_ACTIONS:
            SWEPT.labels(action).inc(len(getattr(outcome, action)))

    def orders_expired(self, count: int) -> None:
        EXPIRED.inc(count)

    def payment_event(self, event_type: str) -> None:
        PAYMENTS.labels(event_type).inc()

    def stock_synced(self, options: int, at: float) -> None:
        del options  # how many options moved says nothing about lag
        SYNCS.inc()
        LAST_SYNC.set(at)
        self._last_sync = at

    def dependency_error(self, dependency: Dependency) -> None:
        DEPENDENCY_ERRORS.labels(dependency).inc()

    def sale_observed(self, snapshot: SaleSnapshot) -> None:
        if self._last_sync is not None:
            SYNC_LAG.set(max(0.0, snapshot.taken_at - self._last_sync))


def _samples() -> CollectorRegistry:
    if not _multiprocess():
        return _REGISTRY
    samples = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(samples)  # type: ignore[no-untyped-call]
    return samples


def serve_worker_metrics(port: int) -> None:
    """Expose this process's samples on ``port`` (a daemon thread), for a worker that runs
    in a container of its own: its sweeps, expiries and syncs are in no web process's
    directory there. Under ``shop up`` the worker shares the web workers' directory instead."""
    start_http_server(port, registry=_samples())


class PrometheusExposition:
    """``/metrics``: every process's samples plus the gauges of the latest sale snapshot."""

    content_type = CONTENT_TYPE

    def render(self, snapshot: SaleSnapshot | None) -> bytes:
        gauges = CollectorRegistry(auto_describe=False)
        gauges.register(_SnapshotCollector(snapshot, time.time()))
        return generate_latest(_samples()) + generate_latest(gauges)

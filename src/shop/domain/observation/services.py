"""Use cases of observation: take a sale snapshot, and turn recent ones into a dashboard."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from shop.domain.clock import Clock
from shop.domain.observation.model import DropFigures, OptionFigures, SaleSnapshot
from shop.domain.observation.ports import (
    DropsOnSale,
    OptionsOnSale,
    PurchaseTally,
    SaleObserver,
    SaleSnapshots,
)
from shop.domain.stock.ports import StockOperations

# Enough points for a one-minute sparkline at one snapshot a second.
HISTORY = 60


async def observe_sale(
    *,
    options: OptionsOnSale,
    drops: DropsOnSale,
    tally: PurchaseTally,
    operations: StockOperations,
    snapshots: SaleSnapshots,
    observer: SaleObserver,
    clock: Clock,
) -> SaleSnapshot:
    """Read the ledger for the options on sale (recently bought, and those of live drops),
    once, for everyone.

    The ledger read is a REPEATABLE READ over the options' totals, sold lines and held
    reservations: too costly to run on every scrape or page refresh of every operator, cheap
    once a second in one worker. What it finds is recorded for the dashboard and reported to
    the observer (the invariant gauges).
    """
    live_drops = tuple(await drops.live()) if drops.enabled else ()
    option_ids = sorted(
        {*await options.on_sale_now(), *(i for drop in live_drops for i in drop.option_ids)}
    )
    stocks = await operations.status(option_ids) if option_ids else []
    snapshot = SaleSnapshot(
        taken_at=clock.now().timestamp(),
        strategy=await operations.active_strategy(),
        options=tuple(OptionFigures.of(stock) for stock in stocks),
        drops=live_drops,
        lines_written=await tally.lines_written(),
    )
    await snapshots.record(snapshot)
    observer.sale_observed(snapshot)
    return snapshot


@dataclass(frozen=True, slots=True)
class OptionTrend:
    """One option with its recent history (oldest first), for a sparkline."""

    figures: OptionFigures
    left_history: tuple[int, ...]
    sold_per_second: float


@dataclass(frozen=True, slots=True)
class DropTrend:
    """One drop for its panel: its options' ledger totals in the latest snapshot, its queue
    length over the recent ones (oldest first) and the admissions actually made per second
    between the last two (beside ``figures.admission_rate``, the drop's setting)."""

    figures: DropFigures
    on_sale: int
    sold: int
    held: int
    left: int
    queue_history: tuple[int, ...]
    admitted_per_second: float


@dataclass(frozen=True, slots=True)
class SaleDashboard:
    """What the admin dashboard draws. ``fresh`` is false when the worker has stopped
    taking snapshots (the page says so instead of showing old numbers as live)."""

    taken_at: float | None
    fresh: bool
    strategy: str | None
    drift: int
    oversold: int
    sold_per_second: float
    sold_per_second_history: tuple[float, ...]
    purchases_per_second: float
    purchases_per_second_history: tuple[float, ...]
    options: tuple[OptionTrend, ...]
    drops: tuple[DropTrend, ...]


def _rate(newer: SaleSnapshot, older: SaleSnapshot, option_id: int | None = None) -> float:
    """Units sold per second between two snapshots, over the options present in both (an
    option entering the followed set is not a burst of sales)."""
    elapsed = newer.taken_at - older.taken_at
    if elapsed <= 0:
        return 0.0
    before = {o.option_id: o.sold for o in older.options}
    sold = sum(
        o.sold - before[o.option_id]
        for o in newer.options
        if o.option_id in before and option_id in (None, o.option_id)
    )
    return max(0.0, sold / elapsed)


def _purchase_rate(newer: SaleSnapshot, older: SaleSnapshot) -> float:
    elapsed = newer.taken_at - older.taken_at
    if elapsed <= 0 or newer.lines_written is None or older.lines_written is None:
        return 0.0
    return max(0.0, (newer.lines_written - older.lines_written) / elapsed)


def _drop_trend(drop: DropFigures, recent: Sequence[SaleSnapshot]) -> DropTrend:
    """``recent`` newest first, ``drop`` from its newest."""
    mine = set(drop.option_ids)
    options = [o for o in recent[0].options if o.option_id in mine]
    seen = [(snap.taken_at, d) for snap in recent for d in snap.drops if d.drop_id == drop.drop_id]
    rate = 0.0
    if len(seen) > 1 and seen[0][0] > seen[1][0]:
        (newer_at, newer), (older_at, older) = seen[0], seen[1]
        rate = max(0.0, (newer.admitted - older.admitted) / (newer_at - older_at))
    return DropTrend(
        figures=drop,
        on_sale=sum(o.on_sale for o in options),
        sold=sum(o.sold for o in options),
        held=sum(o.held for o in options),
        left=sum(o.left for o in options),
        queue_history=tuple(d.queue_length for _, d in reversed(seen)),
        admitted_per_second=rate,
    )


def sale_dashboard(
    recent: Sequence[SaleSnapshot], *, now: float, stale_after: float
) -> SaleDashboard:
    """The dashboard from recent snapshots (newest first). Rates are units sold per second
    between consecutive snapshots, so they need no counter shared between processes."""
    if not recent:
        return SaleDashboard(None, False, None, 0, 0, 0.0, (), 0.0, (), (), ())
    latest = recent[0]
    oldest_first = list(reversed(recent))
    pairs = list(itertools.pairwise(oldest_first))
    rates = tuple(_rate(newer, older) for older, newer in pairs)
    purchases = tuple(_purchase_rate(newer, older) for older, newer in pairs)
    trends = []
    for option in latest.options:
        history = tuple(
            o.left for snap in oldest_first for o in snap.options if o.option_id == option.option_id
        )
        rate = _rate(latest, recent[1], option.option_id) if len(recent) > 1 else 0.0
        trends.append(OptionTrend(option, history, rate))
    return SaleDashboard(
        taken_at=latest.taken_at,
        fresh=now - latest.taken_at <= stale_after,
        strategy=latest.strategy,
        drift=latest.drift,
        oversold=latest.oversold,
        sold_per_second=rates[-1] if rates else 0.0,
        sold_per_second_history=rates,
        purchases_per_second=purchases[-1] if purchases else 0.0,
        purchases_per_second_history=purchases,
        options=tuple(trends),
        drops=tuple(_drop_trend(drop, recent) for drop in latest.drops),
    )

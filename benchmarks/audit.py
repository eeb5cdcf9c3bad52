"""The benchmark's audit: once the load stops, wait for the stores to settle, then check them.

A check that reads while the stores are still moving reports drift that is not there: a
purchase the load generator gave up on may still be between its reserve and its order write,
and under ``counter`` PostgreSQL's ``option.stock`` is a copy the sync job refreshes every
interval. So the audit first waits for an explicit *settled* condition, with a deadline:

- every reading follows a sync the audit runs itself (the sync job's own call, a no-op unless
  ``counter`` sells): the job shares the SAQ worker with order expiries, and a backlog of
  them (an earlier run's orders reaching their payment deadline) once delayed it past the old
  fixed 15 s wait, so a Redis counter was compared with an ``option.stock`` not yet copied;
- no reservation on the audited options is ``pending`` unless it is older than
  ``abandoned_after`` (no request can still be working on it: it was abandoned, and the ledger
  counts its units as held until the sweep gives them back);
- two readings at least ``quiet`` seconds apart are identical (ledger, reservations and order
  statuses).

Only a settled snapshot is judged for drift. Not settling by the deadline is reported as
``unsettled``, distinctly from ``drift`` (the stores disagree with the ledger once settled) and
from ``oversold`` (live order lines exceed what was put on sale, or a store below zero:
never transient, so it is judged on whatever was read last). Every verdict but ``ok`` keeps
the whole picture: the per-option ledger, the open reservations and the order statuses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text

from shop.adapters.redis.stock_counter_home import COUNTER_FIGURE
from shop.adapters.redis.stock_keys import left_key
from shop.bootstrap import Container
from shop.domain.orders.status import OrderStatus
from shop.domain.stock.model import HeldReservation, OptionStock, ReservationStatus

OK, OVERSOLD, DRIFT, UNSETTLED = "ok", "oversold", "drift", "unsettled"


@dataclass(frozen=True)
class LedgerRow:
    """One option as the audit saw it; ``drift`` is each store against the ledger."""

    option_id: int
    stock_total: int
    sold: int
    held: int
    db_stock: int
    counter: int | None
    expected: int
    db_drift: int
    counter_drift: int | None
    oversold: int

    @classmethod
    def of(cls, row: OptionStock) -> LedgerRow:
        counter = row.figures.get(COUNTER_FIGURE)
        below_zero = max(0, -row.db_stock, -(counter or 0))
        return cls(
            option_id=row.option_id,
            stock_total=row.stock_total,
            sold=row.sold,
            held=row.held,
            db_stock=row.db_stock,
            counter=counter,
            expected=row.expected,
            db_drift=row.db_stock - row.expected,
            counter_drift=None if counter is None else counter - row.expected,
            oversold=max(0, row.sold - row.stock_total, below_zero),
        )

    @property
    def drifts(self) -> bool:
        return self.db_drift != 0 or bool(self.counter_drift)


@dataclass(frozen=True)
class Reservations:
    """The open reservations holding units of the audited options.

    Ages are seconds at the time of the snapshot, by the clock of the store that holds them.
    ``in_flight`` counts the pending ones younger than ``abandoned_after``: a request may still
    be working on them.
    """

    pending: int = 0
    confirmed: int = 0
    in_flight: int = 0
    pending_units: int = 0
    confirmed_units: int = 0
    oldest_pending_s: float | None = None
    youngest_pending_s: float | None = None
    oldest_confirmed_s: float | None = None
    pending_keys: tuple[str, ...] = ()  # the oldest few
    # Every open reservation in the store, audited options or not (each audit read scans them).
    store_open: int = 0

    @classmethod
    def of(
        cls,
        held: Sequence[HeldReservation],
        option_ids: set[int],
        *,
        now: float,
        abandoned_after: float,
    ) -> Reservations:
        mine = [r for r in held if any(line.option_id in option_ids for line in r.lines)]
        pending = sorted(
            (r for r in mine if r.status == ReservationStatus.PENDING), key=lambda r: r.created_at
        )
        confirmed = [r for r in mine if r.status != ReservationStatus.PENDING]

        def units(group: Sequence[HeldReservation]) -> int:
            return sum(
                line.quantity for r in group for line in r.lines if line.option_id in option_ids
            )

        def age(reservation: HeldReservation) -> float:
            return round(now - reservation.created_at, 2)

        return cls(
            pending=len(pending),
            confirmed=len(confirmed),
            in_flight=sum(1 for r in pending if now - r.created_at < abandoned_after),
            pending_units=units(pending),
            confirmed_units=units(confirmed),
            oldest_pending_s=age(pending[0]) if pending else None,
            youngest_pending_s=age(pending[-1]) if pending else None,
            oldest_confirmed_s=(
                age(min(confirmed, key=lambda r: r.created_at)) if confirmed else None
            ),
            pending_keys=tuple(r.key for r in pending[:10]),
            store_open=len(held),
        )


@dataclass(frozen=True)
class Snapshot:
    ledger: tuple[LedgerRow, ...]
    reservations: Reservations
    order_statuses: dict[str, int]

    def same_state(self, other: Snapshot) -> bool:
        """Equal but for the ages, which grow by themselves."""
        mine, theirs = self.reservations, other.reservations
        return (
            self.ledger == other.ledger
            and self.order_statuses == other.order_statuses
            and (mine.pending, mine.confirmed, mine.pending_keys)
            == (theirs.pending, theirs.confirmed, theirs.pending_keys)
        )


@dataclass
class Audit:
    """What the audit concluded, and (unless ``ok``) everything needed to tell why."""

    verdict: str
    settled: bool
    oversold: int
    sold: int
    waited_s: float
    polls: int
    # How far option.stock was from the counters when the audit first read them: the sync
    # job's lag (the audit syncs itself before judging, so this is diagnosis, not a verdict).
    db_behind_counter_at_start: int = 0
    # Jobs queued for the SAQ worker when the audit began (a backlog delays the sync job).
    worker_backlog_at_start: int = 0
    reason: str = ""
    ledger: list[dict[str, Any]] = field(default_factory=list)
    reservations: dict[str, Any] = field(default_factory=dict)
    order_statuses: dict[str, int] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        """The stores agreed with the ledger in a settled state."""
        return self.settled and not self.drift

    @property
    def drift(self) -> list[dict[str, Any]]:
        return [row for row in self.ledger if row["db_drift"] or row["counter_drift"]]

    def report(self) -> dict[str, Any]:
        """For the results file: a summary when clean, the whole picture otherwise."""
        summary: dict[str, Any] = {
            "verdict": self.verdict,
            "settled": self.settled,
            "waited_s": self.waited_s,
            "polls": self.polls,
            "db_behind_counter_at_start": self.db_behind_counter_at_start,
            "worker_backlog_at_start": self.worker_backlog_at_start,
        }
        if self.verdict == OK:
            return summary
        return {
            **summary,
            "reason": self.reason,
            "oversold": self.oversold,
            "sold": self.sold,
            "order_statuses": self.order_statuses,
            "reservations": self.reservations,
            "ledger": self.ledger,
        }


async def order_statuses(container: Container, option_ids: Sequence[int]) -> dict[str, int]:
    """Orders with a line of the audited options, per status; ``<status>+unreleased`` counts
    closed orders whose units were not given back yet (the release sweep still owes them)."""
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT o.status, o.stock_released_at IS NULL AS unreleased, "
                "count(DISTINCT o.id) AS n "
                "FROM purchase_order o JOIN order_line l ON l.order_id = o.id "
                "WHERE l.option_id = ANY(:ids) GROUP BY 1, 2"
            ),
            {"ids": list(option_ids)},
        )
        counts: dict[str, int] = {}
        for row in rows:
            closed = row.status in OrderStatus.CLOSED
            name = f"{row.status}+unreleased" if closed and row.unreleased else str(row.status)
            counts[name] = counts.get(name, 0) + int(row.n)
    return dict(sorted(counts.items()))


async def sync_lag(container: Container, option_ids: Sequence[int]) -> int:
    """Units by which ``option.stock`` differs from the Redis counters (0 without counters):
    how far behind the sync job has left PostgreSQL."""
    ids = list(option_ids)
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, stock FROM option WHERE id = ANY(:ids)"), {"ids": ids}
        )
        db = {int(row.id): int(row.stock) for row in rows}
    counters = await container.redis.mget([left_key(option_id) for option_id in ids])
    return sum(
        abs(db.get(option_id, 0) - int(value))
        for option_id, value in zip(ids, counters, strict=True)
        if value is not None
    )


async def snapshot(
    container: Container, option_ids: Sequence[int], *, abandoned_after: float
) -> Snapshot:
    operations = container.stock_operations
    held = await operations.open_reservations()
    reservations = Reservations.of(
        held, set(option_ids), now=time.time(), abandoned_after=abandoned_after
    )
    rows = await operations.status(list(option_ids))
    return Snapshot(
        ledger=tuple(LedgerRow.of(row) for row in rows),
        reservations=reservations,
        order_statuses=await order_statuses(container, option_ids),
    )


def judge(
    last: Snapshot,
    *,
    settled: bool,
    reason: str,
    waited_s: float,
    polls: int,
    first_lag: int = 0,
    backlog: int = 0,
) -> Audit:
    """The verdict on the last snapshot read: oversold wins, then unsettled, then drift."""
    oversold = sum(row.oversold for row in last.ledger)
    drifting = [row for row in last.ledger if row.drifts]
    if oversold:
        verdict = OVERSOLD
        reason = f"{oversold} unit(s) oversold" + (f"; {reason}" if reason else "")
    elif not settled:
        verdict = UNSETTLED
    elif drifting:
        verdict = DRIFT
        reason = f"{len(drifting)} option(s) disagree with the ledger once settled"
    else:
        verdict, reason = OK, ""
    return Audit(
        verdict=verdict,
        settled=settled,
        oversold=oversold,
        sold=sum(row.sold for row in last.ledger),
        waited_s=round(waited_s, 2),
        polls=polls,
        db_behind_counter_at_start=first_lag,
        worker_backlog_at_start=backlog,
        reason=reason,
        ledger=[asdict(row) for row in last.ledger],
        reservations=asdict(last.reservations),
        order_statuses=last.order_statuses,
    )


async def audit(
    container: Container,
    option_ids: Sequence[int],
    *,
    deadline_s: float = 30.0,
    abandoned_after: float = 15.0,
    quiet: float = 1.0,
    poll: float = 0.25,
) -> Audit:
    """Wait until the stores of ``option_ids`` settle (see the module), then judge them."""
    started = time.monotonic()
    deadline = started + deadline_s
    previous: tuple[float, Snapshot] | None = None
    polls = 0
    backlog = await container.queue.count("queued")
    first_lag = await sync_lag(container, option_ids)
    while True:
        polls += 1
        # Copy the counters to PostgreSQL now (what the sync job does; a no-op unless
        # ``counter`` sells) rather than wait for the job: a busy worker runs it late.
        await container.stock_operations.sync()
        current = await snapshot(container, option_ids, abandoned_after=abandoned_after)
        now = time.monotonic()
        in_flight = current.reservations.in_flight
        if in_flight:
            reason = f"{in_flight} reservation(s) still pending (a purchase may be in flight)"
            previous = None
        elif previous is not None and current.same_state(previous[1]):
            if now - previous[0] >= quiet:
                return judge(
                    current,
                    settled=True,
                    reason="",
                    waited_s=now - started,
                    polls=polls,
                    first_lag=first_lag,
                    backlog=backlog,
                )
        else:
            previous = (now, current)
            reason = "the ledger was still changing"
        if now > deadline:
            return judge(
                current,
                settled=False,
                reason=f"unsettled after {deadline_s:.0f} s: {reason}",
                waited_s=now - started,
                polls=polls,
                first_lag=first_lag,
                backlog=backlog,
            )
        await asyncio.sleep(poll)

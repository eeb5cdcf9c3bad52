"""A drop and its rules: when it sells, to whom, how much, how it is paid, how the door opens.

Every rule about a drop is decided here, on plain values: the repository and the waiting room
only store what these methods produced. Times are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shop.domain.errors import Conflict, InvalidInput
from shop.domain.orders.model import PaymentMethod

MAX_OPTIONS = 100
MAX_NAME = 200
MAX_SPAN = 31_536_000  # seconds (a year): windows, admission lifetimes, the pre-queue


class DropStatus(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    SOLD_OUT = "sold_out"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """The waiting room in front of a drop. ``pre_queue`` is how long before the start one
    may join; everyone who joins in it gets a random place at the start."""

    enabled: bool = False
    admit_per_second: int = 10
    admission_ttl: timedelta = timedelta(seconds=120)
    pre_queue: timedelta = timedelta(seconds=600)


@dataclass(frozen=True, slots=True)
class DropRules:
    """Everything an admin chooses about a drop (what a PATCH may change)."""

    name: str
    option_ids: tuple[int, ...]
    starts_at: datetime
    ends_at: datetime | None = None
    per_buyer_limit: int = 1
    max_open_orders_per_buyer: int = 1
    payment_methods: frozenset[PaymentMethod] = frozenset({PaymentMethod.CARD})
    payment_window: timedelta = timedelta(seconds=600)
    queue: QueueSettings = field(default_factory=QueueSettings)

    def validated(self) -> DropRules:
        """The rules, or ``InvalidInput`` naming the first field that breaks one."""
        name = self.name.strip()
        if not name or len(name) > MAX_NAME:
            raise _bad("name", f"a drop needs a name of 1 to {MAX_NAME} characters")
        if self.starts_at.tzinfo is None:
            raise _bad("starts_at", "starts_at needs a UTC offset")
        if self.ends_at is not None:
            if self.ends_at.tzinfo is None:
                raise _bad("ends_at", "ends_at needs a UTC offset")
            if self.ends_at <= self.starts_at:
                raise _bad("ends_at", "ends_at must be after starts_at")
        if not self.option_ids or len(self.option_ids) > MAX_OPTIONS:
            raise _bad("option_ids", f"a drop groups 1 to {MAX_OPTIONS} options")
        if len(set(self.option_ids)) != len(self.option_ids):
            raise _bad("option_ids", "an option is listed twice")
        if min(self.option_ids) < 1:
            raise _bad("option_ids", "option ids are positive")
        for name_, value in (
            ("per_buyer_limit", self.per_buyer_limit),
            ("max_open_orders_per_buyer", self.max_open_orders_per_buyer),
            ("admit_per_second", self.queue.admit_per_second),
        ):
            if value < 1:
                raise _bad(name_, f"{name_} must be at least 1")
        if not self.payment_methods:
            raise _bad("payment_methods", "a drop must accept at least one payment method")
        for name_, span in (
            ("payment_window_seconds", self.payment_window),
            ("admission_ttl_seconds", self.queue.admission_ttl),
        ):
            if not timedelta(seconds=1) <= span <= timedelta(seconds=MAX_SPAN):
                raise _bad(name_, f"{name_} must be between 1 and {MAX_SPAN}")
        if not timedelta(0) <= self.queue.pre_queue <= timedelta(seconds=MAX_SPAN):
            raise _bad("pre_queue_seconds", f"pre_queue_seconds must be between 0 and {MAX_SPAN}")
        return replace(self, name=name, option_ids=tuple(sorted(self.option_ids)))


def _bad(field_name: str, message: str, **extra: Any) -> InvalidInput:
    return InvalidInput(message, extra={"field": field_name, **extra})


@dataclass(frozen=True, slots=True)
class Drop:
    id: int
    rules: DropRules
    created_at: datetime

    @classmethod
    def announce(cls, rules: DropRules, *, drop_id: int, now: datetime) -> Drop:
        """A new drop: announced before it starts (a start in the past is refused)."""
        checked = rules.validated()
        if checked.starts_at <= now:
            raise _bad("starts_at", "starts_at must be in the future")
        return cls(id=drop_id, rules=checked, created_at=now)

    def has_started(self, now: datetime) -> bool:
        return now >= self.rules.starts_at

    def has_ended(self, now: datetime) -> bool:
        return self.rules.ends_at is not None and now >= self.rules.ends_at

    def status(self, now: datetime, *, units_left: int | None = None) -> DropStatus:
        if self.has_ended(now):
            return DropStatus.ENDED
        if not self.has_started(now):
            return DropStatus.SCHEDULED
        if units_left is not None and units_left <= 0:
            return DropStatus.SOLD_OUT
        return DropStatus.LIVE

    def changed(self, changes: DropChanges, now: datetime) -> Drop:
        """Apply an admin's changes. Until the start every rule may change; after it only
        ``ends_at`` and the admission rate (a live sale's terms stay what buyers were told)."""
        if self.has_ended(now):
            raise Conflict("the drop has ended", extra={"state": DropStatus.ENDED.value})
        touched = changes.fields()
        if self.has_started(now):
            frozen = sorted(touched - {"ends_at", "admit_per_second"})
            if frozen:
                raise Conflict(
                    "the drop has started: only ends_at and admit_per_second may change",
                    extra={"field": frozen[0], "state": DropStatus.LIVE.value},
                )
        rules = changes.apply(self.rules).validated()
        if "starts_at" in touched and rules.starts_at <= now:
            raise _bad("starts_at", "starts_at must be in the future")
        if "ends_at" in touched and rules.ends_at is not None and rules.ends_at <= now:
            raise _bad("ends_at", "ends_at must be in the future")
        return replace(self, rules=rules)


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class DropChanges:
    """A PATCH: only the fields given change (``ends_at=None`` removes the end)."""

    name: str = _UNSET
    option_ids: tuple[int, ...] = _UNSET
    starts_at: datetime = _UNSET
    ends_at: datetime | None = _UNSET
    per_buyer_limit: int = _UNSET
    max_open_orders_per_buyer: int = _UNSET
    payment_methods: frozenset[PaymentMethod] = _UNSET
    payment_window: timedelta = _UNSET
    queue_enabled: bool = _UNSET
    admit_per_second: int = _UNSET
    admission_ttl: timedelta = _UNSET
    pre_queue: timedelta = _UNSET

    def fields(self) -> set[str]:
        return {name for name in self.__slots__ if getattr(self, name) is not _UNSET}

    def apply(self, rules: DropRules) -> DropRules:
        given = {name: getattr(self, name) for name in self.fields()}
        queue = replace(
            rules.queue,
            **{
                target: given.pop(source)
                for source, target in (
                    ("queue_enabled", "enabled"),
                    ("admit_per_second", "admit_per_second"),
                    ("admission_ttl", "admission_ttl"),
                    ("pre_queue", "pre_queue"),
                )
                if source in given
            },
        )
        return replace(rules, queue=queue, **given)


@dataclass(frozen=True, slots=True)
class DropFigures:
    """A drop as the admin dashboard shows it: units sold (live orders), held (unpaid or
    reserved), left to reserve, and the waiting room's counts."""

    sold: int
    held: int
    left: int
    waiting: int
    admitted: int
    admit_per_second: int

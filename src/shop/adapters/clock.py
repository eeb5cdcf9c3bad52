"""The wall clock, in UTC: what deadlines and refund windows are measured against."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

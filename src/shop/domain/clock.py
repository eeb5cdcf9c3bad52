"""The one clock port: every rule that measures time asks it, none reads the system clock.

Order deadlines, the refund window and the reservation sweep's age check all take a
``Clock``, so a test moves time by handing in another one (``tests/unit/fakes.FakeClock``)
and production wires ``adapters.clock.SystemClock`` once, in ``bootstrap``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    """Now, timezone-aware UTC. Deadlines and the refund window are measured against it."""

    def now(self) -> datetime: ...

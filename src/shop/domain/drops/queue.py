"""The waiting room's vocabulary: what a buyer in the queue is told, and the admission they
get. The decisions themselves (who is admitted when) run inside Redis, one script per
decision (``adapters/redis/waiting_room.py``); this module states them and renders answers.

- Joining in the ``pre_queue`` before the start gives a place drawn uniformly at random at
  join time; the places are ordered at the start, so hammering at T−1 ms buys nothing.
  Later arrivals queue behind all of them, in arrival order. Joining again keeps the place.
- Admission runs at ``admit_per_second`` across every app process (one token bucket in
  Redis, on Redis's clock).
- The slot rule: an admission holds ``per_buyer_limit`` units (one buyer's share of an
  option), or what is free if less; nobody is admitted unless at least one unit is free of
  holds, so nobody is admitted for stock that is gone. The hold ends when the buyer's order
  reserves (its units are then counted as reserved, in the same Redis script), a short grace
  (``REFUSAL_GRACE``) after the option they picked is refused as sold out (time to pick
  another option with the unit still theirs; then it goes to the next in line, and they stay
  admitted without a hold until the admission expires), or when the admission expires
  unused. So no unit waits long for a buyer who is not coming while others queue. The room's
  ``left`` never exceeds what the stock port has, however purchases and refreshes race, and
  equals it once they have landed (a purchase whose report to Redis failed leaves it high
  until the worker's next refresh).
- The one way past the rule: units bought without a hold (a second option or a second order
  on the same admission, or an order after a refusal's grace) may be units someone else
  holds; that buyer is then refused at purchase (the stock port decides every unit: nothing
  oversells). The shortfall is at most the units bought that way.
- When nothing is left, waiting buyers are told ``sold_out``; they keep their place, and units
  that come back (an expired or cancelled order) admit the next in line, one per unit.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

# How long a buyer refused for the option they picked keeps their hold: time to pick another
# with the unit still theirs, short enough that a buyer who leaves does not idle it for long.
REFUSAL_GRACE = timedelta(seconds=15)


class QueueStatus(StrEnum):
    WAITING = "waiting"
    ADMITTED = "admitted"
    SOLD_OUT = "sold_out"
    ENDED = "ended"
    NOT_OPEN = "not_open"


@dataclass(frozen=True, slots=True)
class Admission:
    """What an admission token carries: who, for which drop, until when."""

    user_id: uuid.UUID
    drop_id: int
    expires_at: datetime

    def valid_for(self, user_id: uuid.UUID, drop_id: int, now: datetime) -> str | None:
        """``None`` if it admits this buyer to this drop now, else why not."""
        if self.drop_id != drop_id:
            return "the admission token is for another drop"
        if self.user_id != user_id:
            return "the admission token is for another customer"
        if now >= self.expires_at:
            return "the admission token has expired; join the queue again"
        return None


@dataclass(frozen=True, slots=True)
class RoomAnswer:
    """What the waiting room's script decided for one buyer. ``position`` is 1-based among
    those waiting (``None`` before the start, when pre-queue places are not drawn yet)."""

    status: QueueStatus
    position: int | None = None
    admission_expires_at: datetime | None = None
    starts_at: datetime | None = None
    admit_per_second: int = 1


@dataclass(frozen=True, slots=True)
class QueueTicket:
    """The answer a buyer gets from ``POST|GET /api/drops/{id}/queue``."""

    status: QueueStatus
    position: int | None
    ahead: int | None
    eta_seconds: int | None
    admission_token: str | None = None
    admission_expires_at: datetime | None = None

    @classmethod
    def of(cls, answer: RoomAnswer, *, now: datetime, token: str | None = None) -> QueueTicket:
        ahead = None if answer.position is None else answer.position - 1
        eta: int | None = None
        if answer.status is QueueStatus.WAITING:
            until_start = 0.0
            if answer.starts_at is not None and answer.starts_at > now:
                until_start = (answer.starts_at - now).total_seconds()
            per_second = max(answer.admit_per_second, 1)
            eta = math.ceil(until_start + (ahead or 0) / per_second)
        elif answer.status is QueueStatus.NOT_OPEN and answer.starts_at is not None:
            eta = max(0, math.ceil((answer.starts_at - now).total_seconds()))
        return cls(
            status=answer.status,
            position=answer.position,
            ahead=ahead,
            eta_seconds=eta,
            admission_token=token if answer.status is QueueStatus.ADMITTED else None,
            admission_expires_at=answer.admission_expires_at,
        )

"""Abuse protection: how many requests a caller may send, and when an address gets blocked.

Anonymous callers are counted per IP address (stricter on sign-in and sign-up, where
guessing passwords pays); authenticated callers per user, more loosely. An address that keeps
sending after being refused is blocked for a while: every anonymous request from it is refused
without doing any work.

Cost is the point: this runs in front of every purchase. An admitted request costs one counter
hit; only refused requests pay more, and an address this process already knows to be blocked
costs nothing at all. Sign-in hits always go to the exact shared counter (one Redis round trip
in production): password guessing gets no slack. Other hits may go to a cheaper ``batched``
counter that shares its counts a moment late (see ``adapters/batched_counter.py`` for the bound
on what that lets through). So a count may pass the block threshold without any request seeing
it exactly: the first request a process sees at or past it sets the block (a block already set
shows as a count of at least ``HELD_COUNT`` and is only learnt), so several processes may each
set it once, which moves its end by at most the time between them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shop.domain.errors import TooManyRequests

if TYPE_CHECKING:
    from shop.domain.identity.ports import RequestCounter

# A held (blocked) caller's count: above any quota, and what ``RequestCounter.hold`` sets.
HELD_COUNT = 1 << 40
# Blocks remembered in this process; beyond this many, expired ones are dropped first, then
# all (the shared counter still knows every block, so forgetting only costs a round trip).
MAX_REMEMBERED_BLOCKS = 50_000


@dataclass(frozen=True, slots=True)
class Quota:
    """At most ``amount`` requests per ``window`` seconds for one caller.

    ``blockable``: callers counted under it (addresses) can be blocked, so a counter that
    shares counts late must still learn a caller's shared count at its first request in a
    window, or a blocked address would get requests through every process it is new to."""

    name: str
    amount: int
    window: int
    blockable: bool = False

    def __post_init__(self) -> None:
        if self.amount < 1 or self.window < 1:
            raise ValueError(f"quota {self.name!r} needs a positive amount and window")


@dataclass(frozen=True, slots=True)
class BlockRule:
    """After ``after_refusals`` refused requests within one window, block for ``seconds``."""

    after_refusals: int
    seconds: int

    def __post_init__(self) -> None:
        if self.after_refusals < 1 or self.seconds < 1:
            raise ValueError("a block rule needs positive refusals and seconds")


class Throttle:
    def __init__(
        self,
        counter: RequestCounter,
        *,
        anonymous: Quota,
        sign_in: Quota,
        user: Quota,
        block: BlockRule,
        batched: RequestCounter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counter = counter
        self._batched = batched or counter
        self._anonymous = anonymous
        self._sign_in = sign_in
        self._user = user
        self._block = block
        self._clock = clock
        self._blocked_until: dict[str, float] = {}

    async def admit_anonymous(self, address: str, *, sign_in: bool = False) -> None:
        """Let an unauthenticated request from ``address`` through, or raise ``TooManyRequests``."""
        until = self._blocked_until.get(address)
        if until is not None:
            left = until - self._clock()
            if left > 0:
                raise self._blocked(left)
            del self._blocked_until[address]

        quota, counter = (
            (self._sign_in, self._counter) if sign_in else (self._anonymous, self._batched)
        )
        count = await counter.hit(quota, address)
        if count <= quota.amount:
            return
        threshold = quota.amount + self._block.after_refusals
        if count < threshold:
            left = await counter.seconds_left(quota, address)
            raise _slow_down(left)
        if count < HELD_COUNT:
            await counter.hold(
                (self._anonymous, self._sign_in), address, seconds=self._block.seconds
            )
            left = float(self._block.seconds)
        else:  # blocked by another process (or by this one, before it forgot)
            left = await counter.seconds_left(quota, address)
        self._remember(address, left)
        raise self._blocked(left)

    async def admit_user(self, user_id: str) -> None:
        """Let a request of an authenticated user through, or raise ``TooManyRequests``."""
        count = await self._batched.hit(self._user, user_id)
        if count > self._user.amount:
            raise _slow_down(await self._batched.seconds_left(self._user, user_id))

    def _remember(self, address: str, seconds: float) -> None:
        now = self._clock()
        if len(self._blocked_until) >= MAX_REMEMBERED_BLOCKS:
            self._blocked_until = {a: u for a, u in self._blocked_until.items() if u > now}
            if len(self._blocked_until) >= MAX_REMEMBERED_BLOCKS:
                self._blocked_until.clear()
        self._blocked_until[address] = now + seconds

    @staticmethod
    def _blocked(seconds: float) -> TooManyRequests:
        return TooManyRequests(
            "too many requests from your address: temporarily blocked",
            retry_after=max(1, math.ceil(seconds)),
        )


def _slow_down(seconds: float) -> TooManyRequests:
    # Whole seconds, rounded up: retrying a fraction early would only be refused again.
    return TooManyRequests(
        "too many requests: slow down and retry later", retry_after=max(1, math.ceil(seconds))
    )

"""The ``db`` and ``redlock`` reservation: one call of ``shop_reserve_stock`` (migration 0008).

The function records the reservation under its idempotency key, counts it against its
buyer and takes its units, with the switch fence and the asynchronous commit folded in
(see ``stock_rows``), in one statement that commits on its own: one round trip, and a hot
option's row is locked only for the server's own time between its decrement and the commit.
A refusal raises inside the function, so nothing of a refused reservation stays.

``shop_reserve_stocks`` runs it for a batch, each reservation in a subtransaction of its own
(a refused one rolls back alone) and answers one outcome per reservation: the redlock
strategy's buyers queued on one option's lock take their units in one statement per lock
turn. Batches stay under PostgreSQL's 64 cached subtransactions per transaction
(``MAX_RESERVE_BATCH``): beyond that every other backend's snapshot starts reading the
subtransaction log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from shop.adapters.db.sqlstate import FOREIGN_KEY_VIOLATION, sqlstate_of
from shop.adapters.db.stock_rows import (
    Raw,
    json_value,
    lines_from_json,
    lines_to_json,
    strategy_moved,
)
from shop.domain.errors import OptionWithdrawn, PurchaseLimitExceeded, SoldOut
from shop.domain.stock.model import Line, PerBuyerLimit, Reservation, limit_for

MAX_RESERVE_BATCH = 32
_RESERVE = "SELECT shop_reserve_stock($1, $2::jsonb, $3, $4, $5::bigint[], $6::int[], $7::int[])"
_RESERVE_ALL = "SELECT shop_reserve_stocks($1::jsonb, $2)"
# The function's refusals (SQLSTATE; DETAIL is the active strategy or the option id).
MOVED_STATE = "SHMOV"
OVER_LIMIT_STATE = "SHLIM"
SHORT_STATE = "SHSLD"


@dataclass(frozen=True, slots=True)
class ReservationAsk:
    """One reservation to make: ``lines`` merged (``merge_lines``: one per option, id order)."""

    key: str
    lines: tuple[Line, ...]
    buyer: str | None
    per_buyer_limit: PerBuyerLimit

    @property
    def limits(self) -> list[int | None]:
        return [limit_for(self.per_buyer_limit, line.option_id) for line in self.lines]


async def reserve_in(raw: Raw, ask: ReservationAsk, *, strategy: str) -> Reservation:
    """Record the reservation, count it against the buyer, take its units, or refuse.

    The refusals come in the order a buyer should hear them: a key that already holds units
    returns that reservation (a retry takes nothing more), then the buyer's limit
    (``PurchaseLimitExceeded``), then the stock (``SoldOut``, or ``OptionWithdrawn`` when a
    tally row's option was deleted meanwhile). A key whose reservation was released is taken
    over again; ``ON CONFLICT DO UPDATE`` locks the existing row even when its WHERE is false,
    so of two concurrent retries exactly one takes over, and the other then reads the row the
    winner committed. ``StrategyMoved`` (nothing written) unless ``strategy`` is the active one.
    """
    try:
        existing = await raw.fetchval(
            _RESERVE,
            ask.key,
            json.dumps(lines_to_json(ask.lines)),
            ask.buyer,
            strategy,
            [line.option_id for line in ask.lines],
            [line.quantity for line in ask.lines],
            ask.limits,
        )
    except Exception as exc:
        refusal = _refusal(sqlstate_of(exc), str(getattr(exc, "detail", "") or ""), ask, strategy)
        if refusal is None:
            raise
        raise refusal from None
    return _reservation(ask, existing)


async def reserve_all_in(
    raw: Raw, asks: Sequence[ReservationAsk], *, strategy: str
) -> list[Reservation | Exception]:
    """``reserve_in`` for each ask, in order, in one statement: each ask's outcome is what
    ``reserve_in`` would have returned or raised for it at that point of the batch. An error
    the function does not answer for a single ask (a lost connection) is raised for all."""
    items = [
        {
            "key": ask.key,
            "lines": lines_to_json(ask.lines),
            "buyer": ask.buyer,
            "ids": [line.option_id for line in ask.lines],
            "qty": [line.quantity for line in ask.lines],
            "lim": ask.limits,
        }
        for ask in asks
    ]
    outcomes = json_value(await raw.fetchval(_RESERVE_ALL, json.dumps(items), strategy))
    answers: list[Reservation | Exception] = []
    for ask, outcome in zip(asks, outcomes, strict=True):
        if "state" in outcome:
            refusal = _refusal(outcome["state"], outcome.get("detail") or "", ask, strategy)
            answers.append(refusal or RuntimeError(f"unexpected refusal {outcome!r}"))
        else:
            answers.append(_reservation(ask, outcome.get("lines")))
    return answers


def _reservation(ask: ReservationAsk, existing: Any) -> Reservation:
    """This call's reservation (``existing`` null), or the one the key already held."""
    if existing is None:
        return Reservation(key=ask.key, lines=ask.lines)
    return Reservation(key=ask.key, lines=lines_from_json(json_value(existing)))


def _refusal(
    state: str | None, detail: str, ask: ReservationAsk, strategy: str
) -> Exception | None:
    """The domain answer for a refusal of ``shop_reserve_stock`` (None: not one of its)."""
    if state == MOVED_STATE:
        return strategy_moved(detail or None, strategy)
    quantities = {line.option_id: line.quantity for line in ask.lines}
    if state == OVER_LIMIT_STATE:
        option_id = int(detail)
        return PurchaseLimitExceeded(
            option_id, cast("int", limit_for(ask.per_buyer_limit, option_id))
        )
    if state == SHORT_STATE:
        option_id = int(detail)
        return SoldOut(option_id, requested=quantities[option_id])
    if state == FOREIGN_KEY_VIOLATION:
        # A tally row's option was deleted while this waited: PostgreSQL's DETAIL names it
        # ("Key (option_id)=(7) is not present ...").
        named = re.search(r"\(option_id\)=\((\d+)\)", detail)
        option_id = int(named.group(1)) if named else ask.lines[0].option_id
        return OptionWithdrawn(option_id, requested=quantities.get(option_id))
    return None

"""Use cases of the drops module: each takes its ports as arguments and holds the rule."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from shop.domain.clock import Clock
from shop.domain.drops.model import Drop, DropChanges, DropFigures, DropRules, DropStatus
from shop.domain.drops.ports import AdmissionTokens, Drops, WaitingRoom
from shop.domain.drops.purchase import terms_of_purchase
from shop.domain.drops.queue import Admission, QueueStatus, QueueTicket, RoomAnswer
from shop.domain.errors import InvalidInput, NotFound
from shop.domain.orders.model import PlaceOrder
from shop.domain.orders.terms import SaleTerms
from shop.domain.stock.ports import StockReservation

MAX_LISTED = 100
MAX_REPUBLISHED = 10_000  # drops not ended the worker republishes (all of them, in practice)


@dataclass(frozen=True, slots=True)
class DropSales:
    """What a purchase in a drop is checked against: the drops, the admission signer, the
    waiting room (told when an admission has been used)."""

    drops: Drops
    admissions: AdmissionTokens
    room: WaitingRoom


async def _units_left(drop: Drop, stock: StockReservation) -> int:
    return sum((await stock.available(drop.rules.option_ids)).values())


async def create_drop(
    rules: DropRules, *, drops: Drops, room: WaitingRoom, stock: StockReservation, clock: Clock
) -> Drop:
    drop = await drops.add(rules, now=clock.now())
    await room.publish(drop)
    await room.refresh_left(drop.id, partial(_units_left, drop, stock))
    return drop


async def change_drop(
    drop_id: int,
    changes: DropChanges,
    *,
    drops: Drops,
    room: WaitingRoom,
    stock: StockReservation,
    clock: Clock,
) -> Drop:
    drop = await get_drop(drop_id, drops=drops)
    now = clock.now()
    changed = drop.changed(changes, now)
    await drops.save(changed, now=now)
    await room.publish(changed)
    await room.refresh_left(changed.id, partial(_units_left, changed, stock))
    return changed


async def get_drop(drop_id: int, *, drops: Drops) -> Drop:
    drop = await drops.get(drop_id)
    if drop is None:
        raise NotFound("drop not found")
    return drop


async def list_drops(
    *, drops: Drops, stock: StockReservation, clock: Clock
) -> list[tuple[Drop, DropStatus]]:
    """Scheduled and live drops, soonest first, each with its status now."""
    now = clock.now()
    listed = await drops.current(now, limit=MAX_LISTED)
    return [(drop, drop.status(now, units_left=await _units_left(drop, stock))) for drop in listed]


async def drop_status(drop: Drop, *, stock: StockReservation, clock: Clock) -> DropStatus:
    return drop.status(clock.now(), units_left=await _units_left(drop, stock))


async def drop_figures(
    drop: Drop, *, drops: Drops, room: WaitingRoom, stock: StockReservation
) -> DropFigures:
    sold, held = await drops.sales(drop)
    waiting, admitted = await room.counts(drop.id)
    return DropFigures(
        sold=sold,
        held=held,
        left=await _units_left(drop, stock),
        waiting=waiting,
        admitted=admitted,
        admit_per_second=drop.rules.queue.admit_per_second,
    )


def _ticket(
    answer: RoomAnswer, drop_id: int, user_id: uuid.UUID, *, tokens: AdmissionTokens, clock: Clock
) -> QueueTicket:
    token = None
    if answer.status is QueueStatus.ADMITTED and answer.admission_expires_at is not None:
        token = tokens.issue(Admission(user_id, drop_id, answer.admission_expires_at))
    return QueueTicket.of(answer, now=clock.now(), token=token)


async def join_queue(
    drop_id: int,
    user_id: uuid.UUID,
    *,
    room: WaitingRoom,
    tokens: AdmissionTokens,
    clock: Clock,
) -> QueueTicket:
    """Take a place in the drop's queue (joining again keeps it). Redis only."""
    answer = await room.join(drop_id, user_id)
    return _ticket(answer, drop_id, user_id, tokens=tokens, clock=clock)


async def poll_queue(
    drop_id: int,
    user_id: uuid.UUID,
    *,
    room: WaitingRoom,
    tokens: AdmissionTokens,
    clock: Clock,
) -> QueueTicket:
    """Where the buyer stands now (admitting whoever is due first). Redis only."""
    answer = await room.poll(drop_id, user_id)
    return _ticket(answer, drop_id, user_id, tokens=tokens, clock=clock)


async def purchase_terms(
    cmd: PlaceOrder,
    drop_of_option: Mapping[int, int],
    *,
    option_ids: Sequence[int],
    sales: DropSales,
    shop_limit: int | None,
    clock: Clock,
) -> SaleTerms | None:
    """The terms of an order whose options belong to a drop (``None``: no drop involved).

    An order is in one drop or none: mixing a drop's options with others (or two drops)
    would give its lines two payment windows and two open-order caps.
    """
    in_drops = {drop_of_option[o] for o in option_ids if o in drop_of_option}
    if not in_drops:
        return None
    if len(in_drops) > 1 or any(o not in drop_of_option for o in option_ids):
        raise InvalidInput(
            "an order may hold the options of one drop only", extra={"field": "lines"}
        )
    drop = await get_drop(in_drops.pop(), drops=sales.drops)
    token = cmd.admission_token
    return terms_of_purchase(
        drop,
        user_id=cmd.user_id,
        option_ids=option_ids,
        payment_method=cmd.payment_method,
        admission=None if not token else sales.admissions.read(token),
        token_sent=bool(token),
        shop_limit=shop_limit,
        now=clock.now(),
    )


async def refresh_waiting_rooms(
    *, drops: Drops, room: WaitingRoom, stock: StockReservation, clock: Clock
) -> list[int]:
    """The worker's backstop: republish the rules of every drop not ended that Redis lost
    (its queue is gone: returned, so the caller reports it) and store what is left of each
    drop, whatever path gave units back (a sweep, a reconcile, a recovery). Then the room
    knows every drop not ended, so it may tell an unknown drop (404) from a lost one (503):
    before the first drop, and after a Redis flush, the answer is 503 until this ran."""
    mark = await room.begin_republish()
    lost: list[int] = []
    for drop in await drops.current(clock.now(), limit=MAX_REPUBLISHED):
        if not await room.is_published(drop.id):
            lost.append(drop.id)
            await room.publish(drop)
        await room.refresh_left(drop.id, partial(_units_left, drop, stock))
    await room.end_republish(mark)
    return lost

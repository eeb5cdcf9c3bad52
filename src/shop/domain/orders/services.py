"""Use cases of the orders module: each takes its ports as arguments and holds the rule.

Two orderings matter everywhere below:
- placing: reserve before writing (stock is the scarce thing, so it decides who wins), write
  the order in one statement, then confirm. A failed write gives the units back at once.
- closing (cancel, expiry): commit the status change first, then release the units. If the
  release fails after the commit, ``stock_released_at`` stays unset and the sweep
  (``release_stock_of_closed_orders``) retries it; release is idempotent, so running it twice
  never returns units twice.

Placing schedules nothing: the worker's ``expire_due_orders`` finds unpaid orders past their
``pay_by`` through a partial index, every second or so, so a purchase pays no job enqueue.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from shop.domain.clock import Clock
from shop.domain.drops.services import DropSales, purchase_terms
from shop.domain.errors import InvalidInput, NotFound, ReservationLost
from shop.domain.observation.model import PurchaseOutcome
from shop.domain.observation.ports import SaleObserver
from shop.domain.orders.model import (
    Order,
    OrderCursor,
    OrderPage,
    OrderRules,
    OrderStatus,
    Placed,
    PlaceOrder,
    check_total,
)
from shop.domain.orders.ports import Orders
from shop.domain.stock.ports import StockReservation

MAX_PAGE_SIZE = 100
SWEEP_BATCH = 100
# Orders one expiry sweep expires at a time: each holds a database connection while it locks
# and commits (the pool has 20), so a drop's backlog expires in a few round trips per batch
# without starving the API processes' pool of the same database.
EXPIRY_CONCURRENCY = 8


def _key_reused() -> InvalidInput:
    return InvalidInput(
        "this Idempotency-Key was already used for a different order; "
        "send a new key for a new order"
    )


async def place_order(
    cmd: PlaceOrder,
    *,
    rules: OrderRules,
    stock: StockReservation,
    orders: Orders,
    clock: Clock,
    sales: DropSales | None = None,
    observer: SaleObserver | None = None,
) -> Placed:
    """Buy (see ``_place``), telling ``observer`` how the purchase ended, whichever way."""
    try:
        placed = await _place(
            cmd, rules=rules, stock=stock, orders=orders, clock=clock, sales=sales
        )
    except BaseException as exc:
        if observer is not None and isinstance(exc, Exception):
            observer.purchase(PurchaseOutcome.of_failure(exc))
        raise
    if observer is not None:
        observer.purchase(PurchaseOutcome.CREATED if placed.created else PurchaseOutcome.REPLAYED)
    return placed


async def _place(
    cmd: PlaceOrder,
    *,
    rules: OrderRules,
    stock: StockReservation,
    orders: Orders,
    clock: Clock,
    sales: DropSales | None = None,
) -> Placed:
    """Buy: validate, price from the catalog, reserve, write, confirm.

    An order of a drop's options follows the drop's terms (``sales``): its start and end,
    payment methods and admission are checked first; its per-buyer limit goes to the stock
    port with the lines, its open-order cap to the order insert, its payment window to
    ``pay_by``.

    Idempotent per (customer, Idempotency-Key): a repeat of the same request returns the
    order the first one placed; the same key with another body is refused. Two identical
    requests racing share one stock reservation (its key is derived from the idempotency key)
    and the unique key on the order lets exactly one of them write; the other answers with
    the winner's order.
    """
    lines = cmd.validated(rules)
    quote = await orders.quote(cmd.user_id, cmd.idempotency_key, [ln.option_id for ln in lines])
    if quote.existing_order_id is not None:
        return await _replay(cmd, quote.existing_order_id, stock=stock, orders=orders, clock=clock)
    if quote.abandoned:
        # The first attempt died after reserving and the sweep gave its units back: this key
        # can hold no order any more. Refused before taking anything.
        raise ReservationLost(cmd.reservation_key)
    unknown = [line.option_id for line in lines if line.option_id not in quote.prices]
    if unknown:
        raise NotFound(f"option {unknown[0]} does not exist", extra={"option_ids": unknown})
    check_total(lines, quote.prices)

    option_ids = [line.option_id for line in lines]
    terms = None
    if sales is not None:
        terms = await purchase_terms(
            cmd,
            quote.drop_of_option,
            option_ids=option_ids,
            sales=sales,
            shop_limit=rules.purchase_limit_per_option,
            clock=clock,
        )
    reservation = await stock.reserve(
        lines,
        key=cmd.reservation_key,
        buyer=str(cmd.user_id),
        per_buyer_limit=rules.purchase_limit_per_option if terms is None else terms.limits,
    )
    if tuple(reservation.lines) != lines:
        # An earlier request with this key (whose order was never written) reserved other
        # lines. Those units are not ours to release: the stock sweep frees them.
        raise _key_reused()

    order = Order.place(
        cmd,
        lines,
        quote.prices,
        order_id=orders.next_id(),
        now=clock.now(),
        rules=rules,
        terms=terms,
    )
    try:
        written = await orders.add(
            order,
            stock_generation=reservation.generation,
            open_order_cap=None if terms is None else terms.max_open_orders,
        )
    except Exception:
        await _release_unless_written(cmd, stock=stock, orders=orders)
        raise
    if not written:
        if await orders.abandon(cmd.reservation_key):
            # No order holds the key: it was claimed void by the sweep, or the reservation
            # came from a store state that was lost since. Whatever this attempt took goes
            # back. (Otherwise a twin request's order holds it: answer with that order.)
            await stock.release(cmd.reservation_key)
            raise ReservationLost(cmd.reservation_key)
        return await _replay(cmd, None, stock=stock, orders=orders, clock=clock)
    await _settle_new_order(order, stock=stock, orders=orders, clock=clock)
    if sales is not None and order.drop_id is not None:
        # The admission became a reserved unit: its slot in the waiting room is free. Best
        # effort: an admission left counted expires on its own.
        with contextlib.suppress(Exception):
            await sales.room.used(order.drop_id, cmd.user_id)
    return Placed(order, created=True)


async def _release_unless_written(
    cmd: PlaceOrder, *, stock: StockReservation, orders: Orders
) -> None:
    """Give the units back after a failed write, unless an order holds this reservation: a
    twin request's, or this one's if the write committed and only its answer was lost. The
    key is claimed void first, atomically with any order insert, so the decision cannot go
    stale before the release. If even that fails, the stock sweep settles it later."""
    with contextlib.suppress(Exception):
        if await orders.abandon(cmd.reservation_key):
            await stock.release(cmd.reservation_key)


async def _settle_new_order(
    order: Order,
    *,
    stock: StockReservation,
    orders: Orders,
    clock: Clock,
) -> None:
    """Confirm the reservation (after the commit). A reservation lost meanwhile (its units
    went back on sale) lapses the order: it cannot be sold twice.

    A failure here leaves a committed order: the error reaches the client, whose retry with
    the same key replays the order and confirms again (the stock sweep confirms a pending
    reservation that has an order). Its expiry needs nothing from here: the sweep finds it
    by its ``pay_by``.
    """
    try:
        await stock.confirm(order.reservation_key)
    except ReservationLost:
        async with orders.locked(order.id) as lapsed:
            if lapsed.status is OrderStatus.PENDING_PAYMENT:
                lapsed.lapse(clock.now())
        raise


async def _replay(
    cmd: PlaceOrder,
    order_id: uuid.UUID | None,
    *,
    stock: StockReservation,
    orders: Orders,
    clock: Clock,
) -> Placed:
    """Answer a repeated request with the order its first attempt placed."""
    order = (
        await orders.get(order_id)
        if order_id is not None
        else await orders.find(cmd.user_id, cmd.idempotency_key)
    )
    if order is None or order.user_id != cmd.user_id:
        raise NotFound("order not found")
    if order.request_fingerprint != cmd.fingerprint():
        raise _key_reused()
    if order.status.releases_stock:
        # A racing twin may have re-reserved under the key of an order closed meanwhile.
        await stock.release(order.reservation_key)
    elif order.status is OrderStatus.PENDING_PAYMENT:
        # The first attempt may have died between its write and its confirm; repeat it.
        # Later states were confirmed long ago (their reservation may even be retired).
        await _settle_new_order(order, stock=stock, orders=orders, clock=clock)
    return Placed(order, created=False)


def _own(order: Order, user_id: uuid.UUID) -> Order:
    """Someone else's order is reported missing, never forbidden: its existence is private."""
    if order.user_id != user_id:
        raise NotFound("order not found")
    return order


async def give_back_stock(
    order: Order, *, stock: StockReservation, orders: Orders, clock: Clock
) -> None:
    """After a close was committed: release the units, then record that they went back."""
    await stock.release(order.reservation_key)
    now = clock.now()
    await orders.mark_stock_released(order.id, now)
    order.stock_released(now)


async def get_order(order_id: uuid.UUID, *, user_id: uuid.UUID, orders: Orders) -> Order:
    order = await orders.get(order_id)
    if order is None:
        raise NotFound("order not found")
    return _own(order, user_id)


async def list_orders(
    user_id: uuid.UUID, *, orders: Orders, limit: int, after: OrderCursor | None = None
) -> OrderPage:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    return await orders.page(user_id, limit=limit, after=after)


async def cancel_order(
    order_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    orders: Orders,
    stock: StockReservation,
    clock: Clock,
) -> Order:
    """Cancel before shipping; the units are back on sale when this returns. Cancelling a
    cancelled order answers it (and finishes a release a crash interrupted).

    This is the stock side only: the HTTP route cancels through
    ``shop.domain.payments.services.cancel_order``, which also returns a paid order's money."""
    async with orders.locked(order_id) as order:
        _own(order, user_id).cancel(clock.now())
    if order.awaits_stock_release:
        await give_back_stock(order, stock=stock, orders=orders, clock=clock)
    return order


async def ship_order(order_id: uuid.UUID, *, orders: Orders, clock: Clock) -> Order:
    async with orders.locked(order_id) as order:
        order.ship(clock.now())
    return order


async def deliver_order(order_id: uuid.UUID, *, orders: Orders, clock: Clock) -> Order:
    async with orders.locked(order_id) as order:
        order.deliver(clock.now())
    return order


async def expire_order(
    order_id: uuid.UUID, *, orders: Orders, stock: StockReservation, clock: Clock
) -> bool:
    """Expire an unpaid order past its deadline and give its units back; ``True`` if this
    call expired it. Anything else (paid meanwhile, cancelled, not due yet, unknown) is left
    as it is: overlapping sweeps pick the same order, and SAQ delivers the job of an earlier
    version at least once. The row lock decides which call expires it; another that finds
    the release still unfinished repeats it, which is idempotent: the units go back once."""
    now = clock.now()
    try:
        async with orders.locked(order_id) as order:
            due = order.is_overdue(now)
            if due:
                order.expire(now)
    except NotFound:
        return False
    if order.awaits_stock_release:
        await give_back_stock(order, stock=stock, orders=orders, clock=clock)
    return due


async def expire_due_orders(
    *,
    orders: Orders,
    stock: StockReservation,
    clock: Clock,
    batch: int = SWEEP_BATCH,
    concurrency: int = EXPIRY_CONCURRENCY,
) -> int:
    """Expire every unpaid order past its deadline; how many this call expired.

    The worker runs this every ``order_expiry_interval``: it is how orders expire (placing
    schedules nothing). Each batch (oldest deadline first, off the partial index on
    ``pay_by``) is expired ``concurrency`` orders at a time, so a drop's thousand orders that
    fall due in the same second are done in about a thousand round trips divided by the bound,
    not one after the other. Every order still goes through ``expire_order``, which decides under
    the order's row lock: two overlapping sweeps (two workers, or one slow run and the next)
    may both pick an order, and exactly one of them expires it and releases its units; the
    other finds it expired and does nothing. Every order of a batch is tried even if one
    fails (its error is raised once the sweep is done, so the job is recorded as failed); the
    sweep stops when a batch expired nothing, so orders it cannot expire never spin it.
    """
    gate = asyncio.Semaphore(concurrency)

    async def expire(order_id: uuid.UUID) -> bool:
        async with gate:
            return await expire_order(order_id, orders=orders, stock=stock, clock=clock)

    expired = 0
    failure: Exception | None = None
    while True:
        due = await orders.overdue(clock.now(), limit=batch)
        outcomes = await asyncio.gather(*(expire(oid) for oid in due), return_exceptions=True)
        done = 0
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                failure = failure or outcome
            elif outcome:
                done += 1
        expired += done
        if len(due) < batch or not done:
            break
    if failure is not None:
        raise failure
    return expired


async def release_stock_of_closed_orders(
    *, orders: Orders, stock: StockReservation, clock: Clock, batch: int = SWEEP_BATCH
) -> int:
    """Finish releases interrupted after a cancel or expiry was committed."""
    released = 0
    while True:
        pending = await orders.awaiting_release(limit=batch)
        for order in pending:
            await give_back_stock(order, stock=stock, orders=orders, clock=clock)
        released += len(pending)
        if len(pending) < batch:
            return released

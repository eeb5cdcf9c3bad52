"""Use cases of the stock module that run behind the buyers: the sweep and the reconciliation.

Both decide by the order each reservation belongs to (``purchase_order.reservation_key``),
because the order table, not the stock store, says whether units were really sold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from shop.domain.clock import Clock
from shop.domain.errors import ReservationLost
from shop.domain.orders.status import OrderStatus
from shop.domain.stock.model import OptionStock, ReservationStatus, SweepOutcome
from shop.domain.stock.ports import OrderStates, StockOperations, StockReservation


async def sweep_reservations(
    *,
    stock: StockReservation,
    operations: StockOperations,
    orders: OrderStates,
    pending_timeout: float,
    clock: Clock,
) -> SweepOutcome:
    """Settle the reservations their buyers' requests left behind.

    - pending for longer than ``pending_timeout``: the request that made it is over. If its
      order was written and is live, the units are sold (confirm). If no order was seen (the
      process died between reserve and insert), the key is first claimed void — atomically
      with any order insert, so a client's retry that writes the order meanwhile wins and the
      reservation is confirmed instead — and only then do the units go back on sale. Younger
      pending reservations are left alone: their order may be committing right now.
    - an order that was cancelled or expired while its reservation still holds units (the
      orders module stopped between its status change and its release): release. This never
      touches a live order's units.
    - confirmed, and its order has shipped (or later): it can no longer be released, so the
      store stops tracking it (retire); the units stay sold.

    A reservation's age is ``clock`` against its ``created_at`` (seconds since the epoch).
    """
    now = clock.now().timestamp()
    held = await operations.open_reservations()
    states = await orders.states_of([reservation.key for reservation in held])
    outcome = SweepOutcome(confirmed=[], released=[], retired=[])
    for reservation in held:
        state = states.get(reservation.key)
        if state is not None and state not in OrderStatus.LIVE:
            await stock.release(reservation.key)
            outcome.released.append(reservation.key)
        elif reservation.status == ReservationStatus.PENDING:
            if now - reservation.created_at < pending_timeout:
                continue
            if state is None and await orders.abandon(reservation.key):
                await stock.release(reservation.key)
                outcome.released.append(reservation.key)
            else:
                with contextlib.suppress(ReservationLost):  # released meanwhile (a cancel)
                    await stock.confirm(reservation.key)
                    outcome.confirmed.append(reservation.key)
        elif state is not None and state not in OrderStatus.RELEASABLE:
            outcome.retired.append(reservation.key)
    if outcome.retired:
        await operations.retire(outcome.retired)
    return outcome


async def reconcile_stock(
    *,
    stock: StockReservation,
    operations: StockOperations,
    orders: OrderStates,
    pending_timeout: float,
    clock: Clock,
    fix: bool,
) -> Sequence[OptionStock]:
    """Report every option whose store disagrees with the ledger; with ``fix``, repair them.

    Fixing first settles what the sweep would (so a stale reservation is not mistaken for
    drift), then resets what is left to the ledger's figure behind the switch fence.
    Returns the drifting options as they were before any repair.
    """
    drifting = [option for option in await operations.status() if option.drift]
    if not fix:
        return drifting
    await sweep_reservations(
        stock=stock,
        operations=operations,
        orders=orders,
        pending_timeout=pending_timeout,
        clock=clock,
    )
    await operations.repair()
    return drifting

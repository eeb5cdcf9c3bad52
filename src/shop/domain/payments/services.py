"""Use cases of the payments module: start a payment, take the gateway's verified events,
refund. Each takes its ports as arguments and holds the rule.

Ordering, as in the orders module: decide and commit under the order's row lock (order,
payment and event record in one transaction), then do what lies outside the database — give
an expired order's units back, ask the gateway for a refund. If that second step fails after
the commit, the order sweep finishes the release; a refund asked for stays ``refund_pending``
on the payment, visible to the admin.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from shop.domain.clock import Clock
from shop.domain.errors import InvalidState, NotFound
from shop.domain.orders.model import Order, OrderRules, OrderStatus
from shop.domain.orders.ports import Orders
from shop.domain.orders.services import give_back_stock
from shop.domain.payments.model import (
    EventType,
    GatewayEvent,
    Payment,
    PaymentStatus,
    RefundReason,
)
from shop.domain.payments.ports import PaymentBook, PaymentGateway, Payments
from shop.domain.stock.ports import StockReservation


@dataclass(frozen=True, slots=True)
class Started:
    payment: Payment
    created: bool


class Outcome(StrEnum):
    APPLIED = "applied"
    REPLAYED = "replayed"


def _own(order: Order, user_id: uuid.UUID) -> Order:
    if order.user_id != user_id:
        raise NotFound("order not found")
    return order


def _find(book: PaymentBook, payment_id: uuid.UUID) -> Payment:
    for payment in book.payments:
        if payment.id == payment_id:
            return payment
    raise NotFound("payment not found")


async def start_payment(
    order_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    currency: str,
    payments: Payments,
    gateway: PaymentGateway,
    clock: Clock,
) -> Started:
    """Open a payment for an order awaiting payment, or answer the one already open (so a
    double click never charges twice). Refused (409) once the order is past ``pay_by`` or no
    longer awaits payment. The gateway is asked under the order's lock: two racing calls
    cannot both open one."""
    now = clock.now()
    async with payments.book(order_id) as book:
        order = _own(book.order, user_id)
        if order.status is not OrderStatus.PENDING_PAYMENT:
            raise InvalidState(
                f"cannot pay an order that is {order.status.value.replace('_', ' ')}",
                state=order.status.value,
            )
        if order.is_overdue(now):
            raise InvalidState("the payment deadline has passed", state=order.status.value)
        for existing in book.payments:
            if existing.is_open:
                return Started(existing, created=False)
        payment = Payment(
            id=payments.next_id(),
            order_id=order.id,
            provider=gateway.name,
            amount=order.total,
            currency=currency,
            status=PaymentStatus.PENDING,
            created_at=now,
            expires_at=order.pay_by,
        )
        checkout = await gateway.start(payment)
        payment.provider_reference = checkout.provider_reference
        payment.checkout_url = checkout.checkout_url
        book.add(payment)
    return Started(payment, created=True)


async def accept_event(
    event: GatewayEvent,
    *,
    payments: Payments,
    gateway: PaymentGateway,
    orders: Orders,
    stock: StockReservation,
    clock: Clock,
) -> Outcome:
    """Apply one verified gateway event, once per event id.

    - ``payment.succeeded`` pays the order (exactly as the order's state machine says); if the
      order can no longer be paid — past ``pay_by`` (it expires here), cancelled, or paid by
      another attempt — the order is left as it is and the money goes back (a ``late`` refund).
    - ``payment.failed`` closes the attempt; the customer may start another.
    - ``refund.succeeded`` / ``refund.failed`` settle the pending refund; a customer's refund
      moves the order to ``refunded``, or back to ``delivered``.

    A mismatched amount or currency, or an unknown payment, changes nothing (not even the
    event record), so the event can be corrected and sent again.
    """
    known = await payments.get(event.payment_id)
    if known is None:
        raise NotFound("payment not found")
    now = clock.now()
    refund_id: str | None = None
    async with payments.book(known.order_id) as book:
        payment = _find(book, event.payment_id)
        payment.check_matches(event)
        if not await book.record(event):
            return Outcome.REPLAYED
        order = book.order
        if event.type is EventType.PAYMENT_SUCCEEDED:
            if payment.succeed(now):
                if order.is_overdue(now):
                    order.expire(now)
                if order.status is OrderStatus.PENDING_PAYMENT:
                    order.pay(payment.amount, now)
                else:
                    refund_id = payment.ask_refund(RefundReason.LATE, now)
        elif event.type is EventType.PAYMENT_FAILED:
            payment.fail(now)
        elif event.type is EventType.REFUND_SUCCEEDED:
            if payment.refund_settled(event.refund_id, now) and (
                payment.refund_reason is RefundReason.CUSTOMER
            ):
                order.complete_refund(now)
        elif payment.refund_failed(event.refund_id, now) and (
            payment.refund_reason is RefundReason.CUSTOMER
        ):
            order.refund_refused()
    if order.awaits_stock_release:
        await give_back_stock(order, stock=stock, orders=orders, clock=clock)
    if refund_id is not None:
        await gateway.refund(payment, refund_id)
    return Outcome.APPLIED


def _paid_by(book: PaymentBook) -> Payment | None:
    for payment in book.payments:
        if payment.status is PaymentStatus.SUCCEEDED:
            return payment
    return None


async def request_refund(
    order_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    payments: Payments,
    gateway: PaymentGateway,
    clock: Clock,
    rules: OrderRules,
) -> Order:
    """Within the window after delivery: the order goes ``refund_pending`` and the gateway is
    asked to return the money; its ``refund.succeeded`` ends in ``refunded``. Asking twice
    answers the pending refund. No stock call: refunded units stay sold."""
    now = clock.now()
    async with payments.book(order_id) as book:
        order = _own(book.order, user_id)
        changed = order.request_refund(now, rules.refund_window)
        payment = _paid_by(book) if changed else None
        if changed and payment is None:
            raise InvalidState("no payment of this order can be refunded", state="delivered")
        refund_id = payment.ask_refund(RefundReason.CUSTOMER, now) if payment else None
    if payment is not None and refund_id is not None:
        await gateway.refund(payment, refund_id)
    return order


async def cancel_order(
    order_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    payments: Payments,
    gateway: PaymentGateway,
    orders: Orders,
    stock: StockReservation,
    clock: Clock,
) -> Order:
    """Cancel before shipping; the units go back on sale, and a paid order's money goes back
    through the gateway (a ``cancelled`` refund, recorded on the payment)."""
    now = clock.now()
    async with payments.book(order_id) as book:
        order = _own(book.order, user_id)
        changed = order.cancel(now)
        payment = _paid_by(book) if changed else None
        refund_id = payment.ask_refund(RefundReason.CANCELLED, now) if payment else None
    if order.awaits_stock_release:
        await give_back_stock(order, stock=stock, orders=orders, clock=clock)
    if payment is not None and refund_id is not None:
        await gateway.refund(payment, refund_id)
    return order


async def resend_pending_refunds(
    *,
    payments: Payments,
    gateway: PaymentGateway,
    clock: Clock,
    after: timedelta,
    batch: int = 100,
) -> int:
    """Ask the gateway again for refunds still pending ``after`` they were asked for: the ask
    happens after the commit, so a crash or an outage there would otherwise leave the money
    with the shop. The same ``refund_id`` each time (the gateway refunds once), and a
    duplicate ``refund.succeeded`` changes nothing."""
    stale = await payments.awaiting_refund(clock.now() - after, limit=batch)
    for payment in stale:
        if payment.refund_id is not None:
            await gateway.refund(payment, payment.refund_id)
    return len(stale)

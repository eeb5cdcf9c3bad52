"""Orders and their state machine: every transition is decided here and nowhere else.

```
pending_payment ──pay──> paid ──ship──> shipping ──deliver──> delivered
      │  └──────────cancel──────┐ │                               │  ^
      │                         v v               request_refund │  │ refund_refused
      └──expire (past pay_by)─> expired  cancelled                v  │
                                                              refund_pending ──complete──> refunded
```
(the refund window is counted from delivery)

``pay`` is called only by the payment module when the gateway's verified webhook reports a
success (``shop.domain.payments.services``); ``complete_refund`` / ``refund_refused`` likewise
follow the gateway's ``refund.succeeded`` / ``refund.failed``.

A transition asked for twice is answered, not refused: paying a paid order, cancelling a
cancelled one, shipping a shipped one return ``False`` ("nothing changed") so that retried
requests and duplicate provider callbacks are harmless. Anything else that does not follow an
arrow raises ``InvalidState`` carrying the current state.

What this model guarantees by construction: an unpaid order is never
deleted (it becomes ``expired`` and its stock is given back), the expiry sweep cannot touch a
paid order (only ``pending_payment`` expires), a payment must match the total and counts once,
cancelling is allowed exactly before shipping, and the refund window starts at delivery.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from shop.domain.errors import Conflict, InvalidInput, InvalidState
from shop.domain.idempotency import check_idempotency_key
from shop.domain.limits import MAX_ORDER_TOTAL
from shop.domain.orders.status import OrderStatus as OrderStatus
from shop.domain.orders.terms import SaleTerms
from shop.domain.paging import (
    decode_cursor,
    encode_cursor,
    micros_of,
    moment_of,
    uuid_key,
    uuid_of,
)
from shop.domain.stock.model import Line, merge_lines


class PaymentMethod(StrEnum):
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"


# The defaults of ``OrderRules``, which the HTTP schema also declares.
MAX_LINE_QUANTITY = 100
MAX_ORDER_LINES = 50


@dataclass(frozen=True, slots=True)
class OrderRules:
    """The tunable part of the rules; the composition root fills it from settings."""

    card_payment_ttl: timedelta = timedelta(minutes=15)
    bank_transfer_ttl: timedelta = timedelta(days=3)
    refund_window: timedelta = timedelta(days=3)
    max_line_quantity: int = MAX_LINE_QUANTITY
    max_order_lines: int = MAX_ORDER_LINES
    # Units of one option one customer may hold across live orders; None = no limit.
    purchase_limit_per_option: int | None = None

    def payment_ttl(self, method: PaymentMethod) -> timedelta:
        return self.card_payment_ttl if method is PaymentMethod.CARD else self.bank_transfer_ttl


def _payment_window(method: PaymentMethod, rules: OrderRules, terms: SaleTerms | None) -> timedelta:
    if terms is not None and terms.payment_window is not None:
        return terms.payment_window
    return rules.payment_ttl(method)


@dataclass(frozen=True, slots=True)
class OptionPrice:
    """What the catalog says an option costs now: the price an order line captures."""

    option_id: int
    product_id: int
    price: int


def check_total(lines: Sequence[Line], prices: Mapping[int, OptionPrice]) -> int:
    """An order's total must stay under ``MAX_ORDER_TOTAL`` (well inside the ``bigint``
    column): refused before any stock is reserved, so nothing has to be given back."""
    total = sum(line.quantity * prices[line.option_id].price for line in lines)
    if total > MAX_ORDER_TOTAL:
        raise InvalidInput(
            f"an order's total is at most {MAX_ORDER_TOTAL} minor units",
            extra={"total": total, "max_total": MAX_ORDER_TOTAL},
        )
    return total


def reservation_key(user_id: uuid.UUID, idempotency_key: str) -> str:
    """The stock reservation's key: one per (customer, Idempotency-Key), so a retried
    request finds the units its first attempt set aside instead of taking more."""
    return f"order:{user_id}:{idempotency_key}"


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """A customer's purchase request, after parsing and before any rule was applied."""

    user_id: uuid.UUID
    idempotency_key: str
    lines: tuple[Line, ...]
    payment_method: PaymentMethod
    shipping_address: str
    # The waiting room's signed admission (``Admission-Token``), for a queued drop. Not part
    # of the fingerprint: a retry with a fresh token is the same purchase.
    admission_token: str | None = None

    @property
    def reservation_key(self) -> str:
        return reservation_key(self.user_id, self.idempotency_key)

    def validated(self, rules: OrderRules) -> tuple[Line, ...]:
        """The lines merged per option, once the request passes the order's bounds."""
        check_idempotency_key(self.idempotency_key)
        if not self.shipping_address.strip():
            raise InvalidInput("a shipping address is required")
        if not self.lines:
            raise InvalidInput("an order needs at least one line")
        if len(self.lines) > rules.max_order_lines:
            raise InvalidInput(
                f"an order may have at most {rules.max_order_lines} lines",
                extra={"lines": len(self.lines), "max_order_lines": rules.max_order_lines},
            )
        for line in self.lines:
            if line.quantity > rules.max_line_quantity:
                raise InvalidInput(
                    f"at most {rules.max_line_quantity} units of option {line.option_id} per order",
                    extra={"option_id": line.option_id, "quantity": line.quantity},
                )
        merged = merge_lines(self.lines)
        for line in merged:
            if line.quantity > rules.max_line_quantity:
                # Each line is within the cap, but lines of one option add up past it: the
                # request clashes with the per-order limit (like the per-customer one, 409).
                raise Conflict(
                    f"at most {rules.max_line_quantity} units of option {line.option_id} per "
                    "order; its lines add up to more",
                    extra={"option_id": line.option_id, "quantity": line.quantity},
                )
        return merged

    def fingerprint(self) -> str:
        """A hash of the canonical request: lines merged and sorted, so the same purchase
        written in another order of lines is recognised as the same request."""
        canonical = {
            "lines": [[line.option_id, line.quantity] for line in merge_lines(self.lines)],
            "payment_method": self.payment_method.value,
            "shipping_address": self.shipping_address,
        }
        payload = json.dumps(canonical, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class OrderLine:
    option_id: int
    product_id: int
    quantity: int
    unit_price: int

    @property
    def subtotal(self) -> int:
        return self.quantity * self.unit_price


@dataclass(slots=True)
class Order:
    """One purchase. Mutated only through its transition methods, under the row lock the
    repository holds while a use case runs (``Orders.locked``)."""

    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    payment_method: PaymentMethod
    pay_by: datetime
    total: int
    shipping_address: str
    idempotency_key: str
    reservation_key: str
    request_fingerprint: str
    lines: tuple[OrderLine, ...]
    created_at: datetime
    paid_at: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None
    expired_at: datetime | None = None
    refunded_at: datetime | None = None
    # When the stock port confirmed the units of a cancelled/expired order went back. Unset
    # while the release is outstanding; the sweep retries those (a crash between the status
    # commit and the release must not keep units off sale for ever).
    stock_released_at: datetime | None = None
    # The drop this order was placed in (its terms set ``pay_by``); None outside drops.
    drop_id: int | None = None

    @classmethod
    def place(
        cls,
        cmd: PlaceOrder,
        lines: Sequence[Line],
        prices: Mapping[int, OptionPrice],
        *,
        order_id: uuid.UUID,
        now: datetime,
        rules: OrderRules,
        terms: SaleTerms | None = None,
    ) -> Order:
        """A new order awaiting payment: prices captured from the catalog now, never from the
        client; the payment deadline follows from the payment method, or from the drop's
        payment window when the order is placed in a drop (``terms``)."""
        priced = tuple(
            OrderLine(
                option_id=line.option_id,
                product_id=prices[line.option_id].product_id,
                quantity=line.quantity,
                unit_price=prices[line.option_id].price,
            )
            for line in lines
        )
        return cls(
            id=order_id,
            user_id=cmd.user_id,
            status=OrderStatus.PENDING_PAYMENT,
            payment_method=cmd.payment_method,
            pay_by=now + _payment_window(cmd.payment_method, rules, terms),
            total=sum(line.subtotal for line in priced),
            shipping_address=cmd.shipping_address.strip(),
            idempotency_key=cmd.idempotency_key,
            reservation_key=cmd.reservation_key,
            request_fingerprint=cmd.fingerprint(),
            lines=priced,
            created_at=now,
            drop_id=None if terms is None else terms.drop_id,
        )

    @property
    def awaits_stock_release(self) -> bool:
        return self.status.releases_stock and self.stock_released_at is None

    def is_overdue(self, now: datetime) -> bool:
        return self.status is OrderStatus.PENDING_PAYMENT and now >= self.pay_by

    def _refuse(self, action: str) -> InvalidState:
        return InvalidState(
            f"cannot {action} an order that is {self.status.value.replace('_', ' ')}",
            state=self.status.value,
        )

    def _move(self, to: OrderStatus) -> bool:
        self.status = to
        return True

    def pay(self, amount: int, now: datetime) -> bool:
        """Record the payment. The amount must be the total; a duplicate callback for a
        payment already recorded is answered without counting it twice. Past ``pay_by`` the
        payment is refused even if the expiry sweep has not run yet (``expire`` first)."""
        if self.status in OrderStatus.PAID_FOR:
            if amount != self.total:
                raise InvalidInput(
                    "the amount does not match the payment already recorded",
                    extra={"amount": amount, "total": self.total},
                )
            return False
        if self.status is not OrderStatus.PENDING_PAYMENT:
            raise self._refuse("pay")
        if self.is_overdue(now):
            raise InvalidState("the payment deadline has passed", state=self.status.value)
        if amount != self.total:
            raise InvalidInput(
                f"the amount must be the order total ({self.total})",
                extra={"amount": amount, "total": self.total},
            )
        self.paid_at = now
        return self._move(OrderStatus.PAID)

    def cancel(self, now: datetime) -> bool:
        """The customer changes their mind: possible until the parcel leaves (pending payment
        or paid). The units go back on sale (the use case releases them)."""
        if self.status is OrderStatus.CANCELLED:
            return False
        if self.status not in OrderStatus.CANCELLABLE:
            raise self._refuse("cancel")
        self.cancelled_at = now
        return self._move(OrderStatus.CANCELLED)

    def expire(self, now: datetime) -> bool:
        """Unpaid past the deadline: the order leaves the customer's list (the row stays for
        audit) and its units go back on sale. Only an unpaid order can expire."""
        if self.status is OrderStatus.EXPIRED:
            return False
        if self.status is not OrderStatus.PENDING_PAYMENT:
            raise self._refuse("expire")
        if not self.is_overdue(now):
            raise InvalidState("the payment deadline has not passed yet", state=self.status.value)
        self.expired_at = now
        return self._move(OrderStatus.EXPIRED)

    def ship(self, now: datetime) -> bool:
        if self.status is OrderStatus.SHIPPING:
            return False
        if self.status is not OrderStatus.PAID:
            raise self._refuse("ship")
        self.shipped_at = now
        return self._move(OrderStatus.SHIPPING)

    def deliver(self, now: datetime) -> bool:
        if self.status is OrderStatus.DELIVERED:
            return False
        if self.status is not OrderStatus.SHIPPING:
            raise self._refuse("deliver")
        self.delivered_at = now
        return self._move(OrderStatus.DELIVERED)

    def request_refund(self, now: datetime, window: timedelta) -> bool:
        """Within ``window`` of delivery (not of ordering): the order waits for the gateway
        (``refund_pending``). The units stay sold: refunded goods are not put back on sale."""
        if self.status in (OrderStatus.REFUND_PENDING, OrderStatus.REFUNDED):
            return False
        if self.status is not OrderStatus.DELIVERED or self.delivered_at is None:
            raise self._refuse("refund")
        if now > self.delivered_at + window:
            raise InvalidState(
                "the refund window has closed",
                state=self.status.value,
                extra={"refundable_until": (self.delivered_at + window).isoformat()},
            )
        return self._move(OrderStatus.REFUND_PENDING)

    def complete_refund(self, now: datetime) -> bool:
        """The gateway reported the money returned (``refund.succeeded``)."""
        if self.status is OrderStatus.REFUNDED:
            return False
        if self.status is not OrderStatus.REFUND_PENDING:
            raise self._refuse("complete the refund of")
        self.refunded_at = now
        return self._move(OrderStatus.REFUNDED)

    def refund_refused(self) -> bool:
        """The gateway could not refund (``refund.failed``): the order is delivered again and
        the customer may ask once more while the window lasts."""
        if self.status is OrderStatus.DELIVERED:
            return False
        if self.status is not OrderStatus.REFUND_PENDING:
            raise self._refuse("refuse the refund of")
        return self._move(OrderStatus.DELIVERED)

    def stock_released(self, now: datetime) -> None:
        self.stock_released_at = now

    def lapse(self, now: datetime) -> None:
        """The stock port lost this order's reservation before the order was written (it was
        swept as abandoned). The order holds no units, so it cannot stand: it is cancelled with
        nothing left to release. Only an unpaid order lapses: nobody has paid for it yet."""
        if self.status is not OrderStatus.PENDING_PAYMENT:
            raise self._refuse("void")
        self.status = OrderStatus.CANCELLED
        self.cancelled_at = now
        self.stock_released_at = now


@dataclass(frozen=True, slots=True)
class OrderCursor:
    """Where a page of a customer's orders (newest first) ended: the last item's sort key.

    Travels as the shared opaque cursor of ``domain/paging.py`` (kind ``orders``), so a
    cursor this server did not issue is refused like every listing's (400).
    """

    created_at: datetime
    order_id: uuid.UUID

    def token(self) -> str:
        return encode_cursor(ORDERS_CURSOR, (micros_of(self.created_at), *uuid_key(self.order_id)))

    @classmethod
    def parse(cls, token: str) -> OrderCursor:
        micros, high, low = decode_cursor(token, kind=ORDERS_CURSOR, size=3)
        return cls(created_at=moment_of(micros), order_id=uuid_of(high, low))


ORDERS_CURSOR = "orders"


@dataclass(frozen=True, slots=True)
class OrderPage:
    items: tuple[Order, ...]
    next_cursor: OrderCursor | None


@dataclass(frozen=True, slots=True)
class Placed:
    """The outcome of ``place_order``: the order, and whether this request created it (201)
    or found it placed by an earlier request with the same Idempotency-Key (200)."""

    order: Order
    created: bool


@dataclass(frozen=True, slots=True)
class Quote:
    """What the server knows before reserving, read in one query on the hot path: the catalog
    prices of the requested options and the order already placed under this Idempotency-Key."""

    prices: Mapping[int, OptionPrice]
    existing_order_id: uuid.UUID | None
    # The reservation of this key was abandoned (claimed void): no order can hold it any more.
    abandoned: bool = False
    # The drop each requested option belongs to (options outside drops are absent).
    drop_of_option: Mapping[int, int] = field(default_factory=dict)

"""An order's states and the named sets every module reads them by: the one home of the
lifecycle rules "which states release stock / count as sold / may be cancelled".

A module of its own (re-exported by ``orders.model``) so that the stock and catalog domains
can import the states without importing the order model, which itself imports ``stock.model``.
Adapters build their SQL from these sets, never from literal state names.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import ClassVar


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    SHIPPING = "shipping"
    DELIVERED = "delivered"
    # The customer asked for a refund and the payment gateway has not answered yet.
    REFUND_PENDING = "refund_pending"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUNDED = "refunded"

    # Filled in below the class (an enum body cannot hold its own members in a set).
    # Closed: the order gave its units back (cancelled, expired); it never counts as sold.
    CLOSED: ClassVar[frozenset[OrderStatus]]
    # Live: every other state. Its lines are sold units for the stock ledger (a refund does
    # not put units back on sale), and its buyer's per-buyer tally counts them.
    LIVE: ClassVar[frozenset[OrderStatus]]
    # The customer may still cancel: before the parcel leaves.
    CANCELLABLE: ClassVar[frozenset[OrderStatus]]
    # Its reservation still holds the units and may yet give them back (a cancel, or expiry
    # of an unpaid order); from any other live state the units stay sold for good.
    RELEASABLE: ClassVar[frozenset[OrderStatus]]
    # The payment was recorded (a duplicate payment callback is answered, not refused).
    PAID_FOR: ClassVar[frozenset[OrderStatus]]
    # Real purchase attempts, counted as demand by the popularity score.
    COUNTS_FOR_POPULARITY: ClassVar[frozenset[OrderStatus]]
    # Holding units without payment: what a drop's open-order cap counts.
    UNPAID: ClassVar[frozenset[OrderStatus]]

    @property
    def releases_stock(self) -> bool:
        """Cancelled and expired orders give their units back; every other state keeps them
        sold (a refund does not put units back on sale)."""
        return self in OrderStatus.CLOSED

    @staticmethod
    def values(states: Collection[OrderStatus]) -> list[str]:
        """The states' values in declaration order (stable SQL text and bind parameters)."""
        return [state.value for state in OrderStatus if state in states]


OrderStatus.CLOSED = frozenset({OrderStatus.CANCELLED, OrderStatus.EXPIRED})
OrderStatus.LIVE = frozenset(OrderStatus) - OrderStatus.CLOSED
OrderStatus.CANCELLABLE = frozenset({OrderStatus.PENDING_PAYMENT, OrderStatus.PAID})
OrderStatus.RELEASABLE = OrderStatus.CANCELLABLE  # the same states, named for the stock's view
OrderStatus.PAID_FOR = frozenset(
    {
        OrderStatus.PAID,
        OrderStatus.SHIPPING,
        OrderStatus.DELIVERED,
        OrderStatus.REFUND_PENDING,
        OrderStatus.REFUNDED,
    }
)
OrderStatus.COUNTS_FOR_POPULARITY = OrderStatus.LIVE
OrderStatus.UNPAID = frozenset({OrderStatus.PENDING_PAYMENT})

"""The terms an order is placed under, when something other than the shop's defaults sets
them (a drop). Its own module so that the drops module can build terms without the orders
model importing the drops module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class SaleTerms:
    """``limits``: units per buyer per option (the stock port decides them atomically);
    ``payment_window`` replaces the payment method's TTL; ``max_open_orders``: unpaid orders
    one buyer may have under ``drop_id`` (decided atomically with the order insert)."""

    drop_id: int | None = None
    limits: Mapping[int, int] = field(default_factory=dict)
    payment_window: timedelta | None = None
    max_open_orders: int | None = None

"""The rules of buying in a drop, decided before the stock port is asked: the order's terms.

The stock port then decides the per-buyer limit atomically with the reservation (the limit
travels per line), and the order insert decides the open-order cap atomically with the write
(``Orders.add``). What is decided here needs no atomicity: the clock, the payment method and
the admission token do not change under a concurrent request.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from shop.domain.drops.errors import (
    AdmissionRequired,
    DropEnded,
    DropNotStarted,
    PaymentMethodNotAllowed,
)
from shop.domain.drops.model import Drop
from shop.domain.drops.queue import Admission
from shop.domain.orders.model import PaymentMethod
from shop.domain.orders.terms import SaleTerms


def terms_of_purchase(
    drop: Drop,
    *,
    user_id: uuid.UUID,
    option_ids: Iterable[int],
    payment_method: PaymentMethod,
    admission: Admission | None,
    token_sent: bool,
    shop_limit: int | None,
    now: datetime,
) -> SaleTerms:
    """The terms of this buyer's order in ``drop`` now, or the refusal naming the rule."""
    rules = drop.rules
    if drop.has_ended(now):
        raise DropEnded(drop.id, rules.ends_at)
    if not drop.has_started(now):
        raise DropNotStarted(drop.id, rules.starts_at)
    if payment_method not in rules.payment_methods:
        raise PaymentMethodNotAllowed(
            drop.id, payment_method.value, sorted(m.value for m in rules.payment_methods)
        )
    if rules.queue.enabled:
        if admission is None:
            reason = (
                "the Admission-Token is not valid"
                if token_sent
                else "send the Admission-Token the queue gave you"
            )
            raise AdmissionRequired(drop.id, reason)
        refused = admission.valid_for(user_id, drop.id, now)
        if refused is not None:
            raise AdmissionRequired(drop.id, refused)
    limit = rules.per_buyer_limit if shop_limit is None else min(rules.per_buyer_limit, shop_limit)
    return SaleTerms(
        drop_id=drop.id,
        limits=dict.fromkeys(option_ids, limit),
        payment_window=rules.payment_window,
        max_open_orders=rules.max_open_orders_per_buyer,
    )

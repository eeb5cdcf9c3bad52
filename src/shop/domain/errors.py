"""The error vocabulary of the domain. Entry points map each family to one response once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """A rule refused the request. The message is meant for the customer."""

    def __init__(self, message: str, *, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, Any] = dict(extra or {})


class MalformedRequest(DomainError):
    """The request cannot be understood as sent (e.g. a page cursor this server never issued)."""


class InvalidInput(DomainError):
    """The request is well-formed but its values break a rule (e.g. quantity above the cap)."""


class NotFound(DomainError):
    """The thing does not exist, or it is not yours (we never reveal which)."""


class Unauthorized(DomainError):
    """Who you are could not be established (missing, bad or expired credentials)."""


class Forbidden(DomainError):
    """We know who you are, and you may not do this."""


class Conflict(DomainError):
    """The request clashes with the current state (duplicate email, non-empty category…)."""


class InvalidState(Conflict):
    """A state machine refused a transition; ``extra['state']`` carries the current state."""

    def __init__(self, message: str, *, state: str | None = None, **kw: Any) -> None:
        extra = dict(kw.pop("extra", None) or {})
        if state is not None:
            extra["state"] = state
        super().__init__(message, extra=extra)
        self.state = state


class SoldOut(Conflict):
    """Not enough units left of an option: first come, first served, and you came later."""

    def __init__(self, option_id: int, *, requested: int | None = None) -> None:
        super().__init__(
            f"option {option_id} is sold out",
            extra={"option_id": option_id, "requested": requested},
        )
        self.option_id = option_id


class PurchaseLimitExceeded(Conflict):
    """One customer may hold at most ``limit`` units of an option: a flash sale is for many."""

    def __init__(self, option_id: int, limit: int) -> None:
        super().__init__(
            f"at most {limit} unit(s) of option {option_id} per customer",
            extra={"option_id": option_id, "limit": limit, "rule": "per_buyer_limit"},
        )
        self.option_id = option_id
        self.limit = limit


class OpenOrderLimitExceeded(Conflict):
    """One customer may have at most ``limit`` unpaid orders in a drop: pay (or cancel) one
    before placing another, so nobody holds a drop's stock with orders they never pay."""

    def __init__(self, drop_id: int, limit: int) -> None:
        super().__init__(
            f"at most {limit} unpaid order(s) per customer in this drop",
            extra={"drop_id": drop_id, "limit": limit, "rule": "max_open_orders_per_buyer"},
        )
        self.drop_id = drop_id
        self.limit = limit


class ReservationLost(Conflict):
    """The stock reservation a purchase relied on is no longer held (it was swept as
    abandoned before its order was written): the purchase must be placed again."""

    def __init__(self, key: str) -> None:
        super().__init__(
            "the units set aside for this purchase were released before the order was "
            "written; place the order again with a new Idempotency-Key"
        )
        self.key = key


class TooManyRequests(DomainError):
    """Slow down; ``retry_after`` says for how many seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, extra={"retry_after": retry_after})
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency (lock, Redis, PostgreSQL) cannot serve now; try again shortly.

    Raised instead of guessing: refusing a sale is recoverable, overselling is not.
    """

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, extra={"retry_after": retry_after})
        self.retry_after = retry_after


class OptionWithdrawn(SoldOut):
    """The option left the catalog (its product was deleted) while a purchase of it was in
    flight: nothing of it can be sold any more, so the buyer hears what a sold-out option
    says (409 naming ``extra.option_id``), with the reason in the message."""

    def __init__(self, option_id: int, *, requested: int | None = None) -> None:
        super().__init__(option_id, requested=requested)
        self.message = f"option {option_id} is no longer on sale"
        self.args = (self.message,)

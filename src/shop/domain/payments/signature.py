"""The webhook signature: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.

The scheme Stripe documents for ``Stripe-Signature``, so a real gateway adapter can reuse it
and Stripe's own library verifies the sandbox's events. Pure functions: the secret and the
clock are arguments. The timestamp is inside the signed text, so an old signature cannot be
moved onto a fresh time; the tolerance bounds how long a captured request can be replayed
(and the event id makes a replay inside the window a no-op anyway).
"""

from __future__ import annotations

import hashlib
import hmac

from shop.domain.errors import MalformedRequest

SIGNATURE_HEADER = "Shop-Signature"
SCHEME = "v1"
TOLERANCE_SECONDS = 300


class BadSignature(MalformedRequest):
    """The webhook's signature is missing, malformed, wrong or too old (400)."""


def compute(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    """The header value for ``body`` signed at ``timestamp``."""
    return f"t={timestamp},{SCHEME}={compute(secret, timestamp, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:
    """The signed timestamp, if one of the header's ``v1`` signatures matches (several are
    allowed, as when a provider rolls its secret) and it is at most ``tolerance`` seconds
    away from ``now``. Compared in constant time."""
    if not header:
        raise BadSignature(f"the {SIGNATURE_HEADER} header is missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise BadSignature(f"the {SIGNATURE_HEADER} header is malformed")
        if key == "t":
            if not value.isdigit() or timestamp is not None:
                raise BadSignature(f"the {SIGNATURE_HEADER} timestamp is malformed")
            timestamp = int(value)
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise BadSignature(f"the {SIGNATURE_HEADER} header needs t=<unix seconds> and v1=<hex>")
    expected = compute(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise BadSignature("the webhook signature does not match")
    if abs(now - timestamp) > tolerance:
        raise BadSignature(
            f"the webhook signature is older than {tolerance} seconds",
            extra={"timestamp": timestamp},
        )
    return timestamp

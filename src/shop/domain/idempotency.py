"""Idempotency keys: the client-chosen names that make a retried write happen once.

Orders and restocks take one each (the ``Idempotency-Key`` header); the bounds are the same
for both, so that a client library can treat every retried write of the shop alike.
"""

from __future__ import annotations

from shop.domain.errors import InvalidInput

MAX_IDEMPOTENCY_KEY_LENGTH = 200


def check_idempotency_key(key: str) -> None:
    if not key.strip():
        raise InvalidInput("the Idempotency-Key header must not be blank")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidInput(
            f"the Idempotency-Key header is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
        )

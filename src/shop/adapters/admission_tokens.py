"""Admission tokens: an HMAC-SHA256 over (drop, user, expiry), so that any app process can
check an admission without asking Redis or PostgreSQL.

The key is derived from the JWT secret with a label (``admission-token``): the same secret
material, but a token of one kind can never be replayed as the other. Format:
``v1.<drop>.<user uuid hex>.<expiry ms>.<base64url signature>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime

from shop.domain.drops.queue import Admission

_LABEL = b"admission-token"


class HmacAdmissionTokens:
    """The ``AdmissionTokens`` port."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, admission: Admission) -> str:
        expires_ms = round(admission.expires_at.timestamp() * 1000)
        payload = f"v1.{admission.drop_id}.{admission.user_id.hex}.{expires_ms}"
        return f"{payload}.{self._sign(payload)}"

    def read(self, token: str) -> Admission | None:
        if len(token) > 200:
            return None
        payload, _, signature = token.rpartition(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            version, drop_id, user_hex, expires_ms = payload.split(".")
            if version != "v1":
                return None
            return Admission(
                user_id=uuid.UUID(hex=user_hex),
                drop_id=int(drop_id),
                expires_at=datetime.fromtimestamp(int(expires_ms) / 1000, tz=UTC),
            )
        except ValueError:
            return None

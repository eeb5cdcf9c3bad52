"""Ports of the identity module. Adapters satisfy them structurally (no base classes)."""

from __future__ import annotations

from typing import Protocol

from shop.domain.identity.model import Principal


class AccessTokens(Protocol):
    """Short-lived, self-contained proof of identity (a signed JWT in production)."""

    def issue(self, principal: Principal) -> tuple[str, int]:
        """Return the token and its lifetime in seconds."""
        ...

    def verify(self, token: str) -> Principal:
        """Return who the token speaks for; raise ``Unauthorized`` if it is not valid now."""
        ...

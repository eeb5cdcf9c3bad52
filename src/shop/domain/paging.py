"""Keyset (cursor) pagination shared by every listing: pages, limits and opaque cursors.

A cursor names the last item of the page the client already has (its sort key and id); the
next page starts strictly after it. Page 1,000 then costs what page 1 costs (an index seek, not
an OFFSET that reads and discards everything before it), and an insert between two requests
can neither repeat an item nor skip one (a ``<=`` comparison would repeat the boundary item
on every page).

Cursors are opaque to clients (base64url of a small JSON array) so that the key can change
without breaking the API contract. They are validated, not trusted: anything this server could
not have issued is refused with ``MalformedRequest`` instead of reaching SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from shop.domain.errors import InvalidInput, MalformedRequest

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 200
# Keys go to PostgreSQL as bigint: anything outside would fail there rather than here.
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None


def check_limit(limit: int, *, maximum: int = MAX_LIMIT) -> int:
    """A page size the server is willing to serve: bounded so one request cannot scan it all."""
    if not 1 <= limit <= maximum:
        raise InvalidInput(
            f"limit must be between 1 and {maximum}",
            extra={"parameter": "limit", "value": limit, "maximum": maximum},
        )
    return limit


def encode_cursor(kind: str, key: Sequence[int]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(token: str, *, kind: str, size: int) -> tuple[int, ...]:
    """The key inside a cursor of ``kind``; ``MalformedRequest`` for anything else.

    ``kind`` ties a cursor to the ordering that issued it: a ``newest`` cursor handed to a
    ``popular`` listing would silently start from a meaningless position.
    """
    if not token or len(token) > MAX_CURSOR_LENGTH:
        raise invalid_cursor("the cursor is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        raise invalid_cursor("the cursor is not one this server issued") from None
    if not isinstance(decoded, list) or len(decoded) != size + 1:
        raise invalid_cursor("the cursor is not one this server issued")
    if decoded[0] != kind:
        raise invalid_cursor(f"the cursor belongs to another ordering, not to {kind!r}")
    key = decoded[1:]
    if not all(type(part) is int and _BIGINT_MIN <= part <= _BIGINT_MAX for part in key):
        raise invalid_cursor("the cursor is not one this server issued")
    return tuple(key)


def invalid_cursor(reason: str) -> MalformedRequest:
    return MalformedRequest(
        f"invalid cursor: {reason}; start again without a cursor",
        extra={"parameter": "cursor"},
    )


def page_of(items: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """Cut a ``limit + 1`` fetch into a page: the extra row only proves a next page exists,
    so the last page never hands out a cursor that leads to an empty page."""
    shown = list(items[:limit])
    has_more = len(items) > limit
    return Page(items=shown, next_cursor=cursor_of(shown[-1]) if has_more and shown else None)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros_of(moment: datetime) -> int:
    """A timestamp as whole microseconds since the epoch: exact, unlike a float, so a cursor
    built from PostgreSQL's microsecond ``timestamptz`` lands exactly on the boundary row."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def uuid_key(value: uuid.UUID) -> tuple[int, int]:
    """A UUID as two signed 64-bit halves: cursor keys are bigints, a UUID is 128 bits."""
    high, low = divmod(value.int, 2**64)
    return high - 2**63, low - 2**63


def uuid_of(high: int, low: int) -> uuid.UUID:
    return uuid.UUID(int=(high + 2**63) * 2**64 + (low + 2**63))


def moment_of(micros: int) -> datetime:
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise invalid_cursor("the cursor is not one this server issued") from None

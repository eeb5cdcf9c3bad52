"""The domain's bounds (``shop.domain.limits``) as HTTP parameter and field types.

Declared here once so that every path id, query id and body number carries its range into
validation *and* into the OpenAPI document: a client reads the same limits the server
enforces, and nothing outside a column's range ever reaches PostgreSQL.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter
from msgspec import Meta

from shop.domain.limits import MAX_ID, MAX_ORDER_TOTAL, MAX_POSITION, MAX_PRICE

_ID_TEXT = f"a positive 64-bit id (1 to {MAX_ID})"

# Patterns are written with explicit classes, not ``\s``: Python's ``\s`` (what the server
# and ``str.strip`` use) and ECMA's (what JSON Schema tools use) disagree on U+0085 and
# U+001C-U+001F, and the document must mean exactly what the server enforces.
SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Any text the shop stores: no NUL (the body guard refuses it in every string).
TEXT = r"^[^\x00]*$"
# A string the domain strips before using: text with at least one non-whitespace character.
NOT_BLANK = rf"^[^\x00]*[^\x00{SPACE}][^\x00]*$"

# Path and query parameters.
PathId = Annotated[int, Parameter(ge=1, le=MAX_ID, description=_ID_TEXT)]

# Body fields.
Id = Annotated[int, Meta(ge=1, le=MAX_ID, description=_ID_TEXT)]
Position = Annotated[
    int,
    Meta(
        ge=-MAX_POSITION,
        le=MAX_POSITION,
        description=f"order among siblings, -{MAX_POSITION} to {MAX_POSITION}",
    ),
]
Price = Annotated[
    int, Meta(ge=0, le=MAX_PRICE, description=f"integer minor units (cents), at most {MAX_PRICE}")
]
Amount = Annotated[int, Meta(ge=0, le=MAX_ORDER_TOTAL, description="integer minor units (cents)")]

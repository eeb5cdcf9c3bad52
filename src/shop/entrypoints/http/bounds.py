"""The domain's bounds (``shop.domain.limits``) as HTTP parameter and field types.

Declared here once so that every path id, query id and body number carries its range into
validation *and* into the OpenAPI document: a client reads the same limits the server
enforces, and nothing outside a column's range ever reaches PostgreSQL.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter
from msgspec import Meta

from shop.domain.limits import MAX_ID, MAX_INT32, MAX_PRICE

_ID_TEXT = f"a positive 64-bit id (1 to {MAX_ID})"

# Path and query parameters.
PathId = Annotated[int, Parameter(ge=1, le=MAX_ID, description=_ID_TEXT)]

# Body fields.
Id = Annotated[int, Meta(ge=1, le=MAX_ID, description=_ID_TEXT)]
Position = Annotated[int, Meta(ge=-MAX_INT32 - 1, le=MAX_INT32, description="a 32-bit integer")]
Price = Annotated[
    int, Meta(ge=0, le=MAX_PRICE, description=f"integer minor units (cents), at most {MAX_PRICE}")
]
Amount = Annotated[int, Meta(ge=0, le=2**63 - 1, description="integer minor units (cents)")]

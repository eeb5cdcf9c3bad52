"""The orders list pages through the shared cursor codec (domain/paging.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shop.domain.errors import MalformedRequest
from shop.domain.orders.model import OrderCursor
from shop.domain.paging import encode_cursor


@pytest.mark.parametrize(
    "order_id",
    [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.uuid4(), uuid.UUID(int=2**127)],
)
def test_an_order_cursor_comes_back_exactly_as_it_was_issued(order_id: uuid.UUID) -> None:
    cursor = OrderCursor(datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), order_id)
    assert OrderCursor.parse(cursor.token()) == cursor


@pytest.mark.parametrize("token", ["garbage", "", encode_cursor("newest", (1, 2))])
def test_a_cursor_this_listing_did_not_issue_is_a_malformed_request(token: str) -> None:
    with pytest.raises(MalformedRequest):
        OrderCursor.parse(token)

"""Cursors and limits: what the server issues it accepts back; anything else is refused."""

from __future__ import annotations

import datetime

import pytest

from shop.domain.errors import InvalidInput, MalformedRequest
from shop.domain.paging import (
    MAX_LIMIT,
    check_limit,
    decode_cursor,
    encode_cursor,
    micros_of,
    moment_of,
    page_of,
)


def test_a_cursor_round_trips() -> None:
    token = encode_cursor("newest", (1_767_225_600_123_456, 42))
    assert decode_cursor(token, kind="newest", size=2) == (1_767_225_600_123_456, 42)


def test_a_cursor_is_opaque_url_safe_text() -> None:
    token = encode_cursor("popular", (-5, 2**62))
    assert token.isascii()
    assert not set(token) & set("+/= &?")


@pytest.mark.parametrize(
    "token",
    ["", "A" * 201, "%%%", encode_cursor("popular", (1, 2)), encode_cursor("newest", (1,))],
)
def test_foreign_or_broken_cursors_are_malformed_requests(token: str) -> None:
    with pytest.raises(MalformedRequest) as caught:
        decode_cursor(token, kind="newest", size=2)
    assert caught.value.extra == {"parameter": "cursor"}


def test_keys_beyond_bigint_are_refused_before_reaching_sql() -> None:
    with pytest.raises(MalformedRequest):
        decode_cursor(encode_cursor("newest", (2**63, 1)), kind="newest", size=2)


def test_timestamps_survive_to_the_microsecond() -> None:
    moment = datetime.datetime(2026, 11, 25, 12, 30, 1, 999_999, tzinfo=datetime.UTC)
    assert moment_of(micros_of(moment)) == moment
    assert micros_of(datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)) == 0


def test_an_impossible_timestamp_is_a_malformed_cursor() -> None:
    with pytest.raises(MalformedRequest):
        moment_of(2**62)


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1])
def test_a_page_size_outside_one_to_the_maximum_is_refused(limit: int) -> None:
    with pytest.raises(InvalidInput):
        check_limit(limit)
    assert check_limit(MAX_LIMIT) == MAX_LIMIT


def test_the_extra_row_only_proves_a_next_page() -> None:
    more = page_of([1, 2, 3, 4], 3, lambda last: f"after-{last}")
    last = page_of([1, 2, 3], 3, lambda last: f"after-{last}")
    assert (more.items, more.next_cursor) == ([1, 2, 3], "after-3")
    assert (last.items, last.next_cursor) == ([1, 2, 3], None)

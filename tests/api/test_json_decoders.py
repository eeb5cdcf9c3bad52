"""The JSON decoding path on adversarial input, property-based and without I/O.

What a request body goes through before a handler sees it: ``body_guard.body_problem`` on
the raw bytes, then msgspec decoding into the handler's struct. Whatever the bytes, the only
outcomes allowed are a ``BodyProblem`` (400/422), a msgspec ``DecodeError`` (400), a
``ValidationError`` (422), or a value whose every number is inside its column's range and
whose strings hold no NUL. Anything else (RecursionError, OverflowError, UnicodeError) would
be a 500.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shop.domain.limits import MAX_ID, MAX_INT32, MAX_PRICE
from shop.entrypoints.http.body_guard import MAX_JSON_DEPTH, body_problem
from shop.entrypoints.http.catalog_schemas import CategoryIn, ProductIn, ProductPatch
from shop.entrypoints.http.identity import PasswordChangeIn, SignUpIn
from shop.entrypoints.http.orders import OrderIn

BODIES = (OrderIn, ProductIn, ProductPatch, CategoryIn, SignUpIn, PasswordChangeIn)

adversarial_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**62)),
    st.sampled_from([2**31, 2**31 - 1, 2**63, 2**63 - 1, -(2**63) - 1, 10**22, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
)
adversarial_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(["\x00", "\\", '"', "\u2028", "\x85", " ", "a", "é"])),
    st.sampled_from(["\x00", "a\x00b", "\\u0000", " ", "\u3000", "A" * 5000]),
)
json_values = st.recursive(
    st.none() | st.booleans() | adversarial_numbers | adversarial_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "lines",
                    "option_id",
                    "quantity",
                    "name",
                    "price",
                    "category_ids",
                    "options",
                    "stock",
                    "email",
                    "password",
                    "position",
                    "parent_id",
                    "shipping_address",
                    "payment_method",
                    "current_password",
                    "new_password",
                    "extra",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


def _decode(raw: bytes, body: type[Any]) -> Any:
    """What the app does with a body: the guard first, then msgspec; None when refused."""
    if body_problem(raw) is not None:
        return None
    try:
        return msgspec.json.decode(raw, type=body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _numbers_and_strings(value: Any) -> list[Any]:
    if isinstance(value, msgspec.Struct):
        return [
            leaf
            for name in value.__struct_fields__
            for leaf in _numbers_and_strings(getattr(value, name))
        ]
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _numbers_and_strings(item)]
    return [value]


@settings(max_examples=300, deadline=None)
@given(value=json_values, body=st.sampled_from(BODIES))
def test_any_json_value_is_refused_cleanly_or_fits_the_columns(value: Any, body: type[Any]) -> None:
    raw = json.dumps(value).encode()
    decoded = _decode(raw, body)
    if decoded is None:
        return
    for leaf in _numbers_and_strings(decoded):
        if isinstance(leaf, bool) or leaf is None:
            continue
        if isinstance(leaf, int):
            assert -MAX_INT32 - 1 <= leaf <= max(MAX_ID, MAX_PRICE), leaf
        if isinstance(leaf, str):
            assert "\x00" not in leaf


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), body=st.sampled_from(BODIES))
def test_arbitrary_bytes_never_escape_as_another_error(raw: bytes, body: type[Any]) -> None:
    _decode(raw, body)


@settings(max_examples=100, deadline=None)
@given(depth=st.integers(min_value=1, max_value=5000), opener=st.sampled_from(["[", '{"a":']))
def test_nesting_is_refused_exactly_past_the_cap(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    raw = (opener * depth + "1" + closer * depth).encode()
    problem = body_problem(raw)
    assert (problem is not None) == (depth > MAX_JSON_DEPTH)
    if problem is not None:
        assert problem.status_code == 400


@settings(max_examples=200, deadline=None)
@given(text=adversarial_text)
def test_nul_is_found_in_any_string_and_only_there(text: str) -> None:
    raw = json.dumps({"name": text, "note": "C:\\u0000 is not NUL"}).encode()
    problem = body_problem(raw)
    if "\x00" in text:
        assert problem is not None and problem.status_code == 422
    else:
        assert problem is None or problem.status_code == 400  # only depth or UTF-8 remain


@pytest.mark.parametrize(
    "raw", [b"\xff", b'{"a": "\xc3"}', b'"\xed\xa0\x80"', b"[" * 100_000, b'{"a": "\\u0000"}']
)
def test_the_issue_s_bodies_are_problems_not_crashes(raw: bytes) -> None:
    problem = body_problem(raw)
    assert problem is not None
    assert problem.status_code in (400, 422)
    assert problem.detail

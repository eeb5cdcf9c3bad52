"""The access-token verifier: what it remembers of a checked token, and what it never does."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from shop.adapters.security import JwtAccessTokens
from shop.domain.errors import Unauthorized
from shop.domain.identity.model import Principal, Role

SECRET = "test-secret-not-for-production-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature and claims were really checked."""
    checked: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        checked.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)  # the module object security.py calls
    return checked


def _principal() -> Principal:
    return Principal(user_id=uuid.uuid4(), role=Role.CUSTOMER)


def test_a_token_is_checked_once_then_answered_from_memory(decodes: list[str]) -> None:
    tokens = JwtAccessTokens(SECRET, ttl_seconds=60, remember=10)
    ann = _principal()
    token, _ = tokens.issue(ann)
    assert [tokens.verify(token) for _ in range(3)] == [ann] * 3
    assert decodes == [token]


def test_a_remembered_token_still_expires(decodes: list[str]) -> None:
    clock = Clock()
    tokens = JwtAccessTokens(SECRET, ttl_seconds=60, leeway_seconds=5, remember=10, clock=clock)
    token, _ = tokens.issue(_principal())
    tokens.verify(token)
    clock.now += 60 + 4
    tokens.verify(token)  # within the leeway, as a fresh check would accept it
    clock.now += 2
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token)
    assert decodes == [token], "the expiry came from memory"


def test_refused_tokens_are_never_remembered(decodes: list[str]) -> None:
    tokens = JwtAccessTokens(SECRET, ttl_seconds=60, remember=10)
    good, _ = tokens.issue(_principal())
    tokens.verify(good)
    header, payload, signature = good.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}AA"
    for _ in range(2):
        with pytest.raises(Unauthorized):
            tokens.verify(forged)
        with pytest.raises(Unauthorized):
            tokens.verify("garbage")
    assert decodes == [good, forged, "garbage", forged, "garbage"]


def test_memory_is_bounded_and_the_oldest_is_forgotten(decodes: list[str]) -> None:
    tokens = JwtAccessTokens(SECRET, ttl_seconds=60, remember=2)
    first, second, third = (tokens.issue(_principal())[0] for _ in range(3))
    for token in (first, second, third, third, first):
        tokens.verify(token)
    assert decodes == [first, second, third, first]


def test_remember_zero_checks_every_time(decodes: list[str]) -> None:
    tokens = JwtAccessTokens(SECRET, ttl_seconds=60)
    token, _ = tokens.issue(_principal())
    tokens.verify(token)
    tokens.verify(token)
    assert decodes == [token, token]

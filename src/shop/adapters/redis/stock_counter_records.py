"""How the counter strategy writes its values in Redis, and reads them back typed.

A reservation record (``RECORDS``) is one string, ``status|created_ms|lines|buyer``, and its
lines are ``option:quantity`` pairs. The Lua scripts (``stock_counter_scripts``) write and
test the same format; here is the one Python side of it, shared by the port, the home and
the recovery. The typed reads wrap the untyped answers of redis-py's async client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, cast

from redis.asyncio import Redis

from shop.domain.stock.model import HeldReservation, Line, ReservationStatus, merge_lines


def encode_lines(lines: Sequence[Line]) -> str:
    return ",".join(f"{line.option_id}:{line.quantity}" for line in lines)


def decode_lines(raw: str) -> tuple[Line, ...]:
    pairs = (part.split(":") for part in raw.split(",") if part)
    return merge_lines(Line(int(option_id), int(quantity)) for option_id, quantity in pairs)


def encode_record(held: HeldReservation) -> str:
    status = "p" if held.status == ReservationStatus.PENDING else "c"
    created_ms = round(held.created_at * 1000)
    return f"{status}|{created_ms}|{encode_lines(held.lines)}|{held.buyer or ''}"


def decode_record(key: str, raw: bytes | str) -> HeldReservation:
    text = raw.decode() if isinstance(raw, bytes) else raw
    status, created_ms, lines, buyer = text.split("|", 3)
    return HeldReservation(
        key=key,
        lines=decode_lines(lines),
        status=ReservationStatus.PENDING if status == "p" else ReservationStatus.CONFIRMED,
        buyer=buyer or None,
        created_at=int(created_ms) / 1000,
    )


def as_text(value: Any) -> str:
    """A script's or a command's answer (bytes from Redis, or a number) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


async def smembers(redis: Redis, key: str) -> set[bytes]:
    return await cast("Awaitable[set[bytes]]", redis.smembers(key))


async def hgetall(redis: Redis, key: str) -> dict[bytes, bytes]:
    return await cast("Awaitable[dict[bytes, bytes]]", redis.hgetall(key))

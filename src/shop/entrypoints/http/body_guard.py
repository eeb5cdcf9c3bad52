"""Checks on a request body's raw bytes before any JSON decoder sees them.

Three things the decoders either crash on or would hand on to PostgreSQL as a 500:
- bytes that are not UTF-8 (400: the body is not JSON text at all);
- nesting deeper than ``MAX_JSON_DEPTH`` (400): no shop body nests more than a few levels,
  and a decoder walking 100,000 brackets recurses until the interpreter gives up;
- ``\\u0000`` inside a string (422): PostgreSQL ``text`` cannot store NUL, and every string
  a body carries may be stored.

The checks cost little on the bodies the shop really gets: the depth scan only runs when the
body has more brackets than the cap, and the NUL scan is one ``bytes.find``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPRequestEvent, Receive, ReceiveMessage, Scope, Send

from shop.entrypoints.http.raw_response import send_json_error

MAX_JSON_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")
_NUL_ESCAPE = b"\\u0000"
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class BodyProblem(msgspec.Struct, frozen=True):
    status_code: int
    detail: str


def _too_deep(body: bytes, limit: int) -> bool:
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', body)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        if depth > limit:
            return True
    return False


def _has_nul_escape(body: bytes) -> bool:
    """``\\u0000`` as an escape, not as the text ``\\\\u0000`` (an escaped backslash)."""
    start = body.find(_NUL_ESCAPE)
    while start != -1:
        backslashes = 0
        while start - backslashes - 1 >= 0 and body[start - backslashes - 1] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return True
        start = body.find(_NUL_ESCAPE, start + 1)
    return False


def body_problem(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> BodyProblem | None:
    """What is wrong with a JSON body's bytes, or None if a decoder may have them."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BodyProblem(400, f"Malformed request body: not UTF-8 (byte {exc.start})")
    if b"\x00" in body or _has_nul_escape(body):
        return BodyProblem(422, "Invalid request: strings must not contain NUL (\\u0000)")
    if _too_deep(body, max_depth):
        return BodyProblem(400, f"Malformed request body: JSON nested deeper than {max_depth}")
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # Litestar decodes a body without a content type as JSON


def body_guard(max_bytes: int) -> Callable[[ASGIApp], ASGIApp]:
    """Route middleware: buffers the body (Litestar buffers it anyway before decoding) and
    answers a ``body_problem`` itself, in the shop's error shape. Placed after the auth
    middleware, so an anonymous caller still hears 401 first. A body over ``max_bytes`` is
    passed on unchecked for Litestar to refuse (413)."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if (
                scope["type"] != ScopeType.HTTP
                or scope.get("method") in _BODYLESS
                or not _is_json(scope)
            ):
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []
            size, pending, other = 0, False, None
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    other = message
                    break
                chunk = message.get("body", b"")
                chunks.append(chunk)
                size += len(chunk)
                pending = message.get("more_body", False)
                if not pending or size > max_bytes:
                    break
            body = b"".join(chunks)
            problem = body_problem(body) if body and not pending and other is None else None
            if problem is not None:
                await send_json_error(send, problem.status_code, problem)
                return
            replayed = False

            async def replay() -> ReceiveMessage:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    replayed_body: HTTPRequestEvent = {
                        "type": "http.request",
                        "body": body,
                        "more_body": pending,
                    }
                    return replayed_body
                return other if other is not None else await receive()

            await app(scope, replay, send)

        return guarded

    return wrap

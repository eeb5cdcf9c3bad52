"""The access log's sampling (errors and slow requests always written) and the request ids."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from shop.entrypoints.http import request_log
from shop.entrypoints.http.request_log import RequestIds, request_log_middleware


class Lines:
    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.written.append({"event": event, **fields})


def _answering(status: int, delay: float = 0.0) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _call(app: Any, path: str = "/x") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    await app(scope, None, send)
    return sent


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Lines:
    spy = Lines()
    monkeypatch.setattr(request_log, "_log", spy)
    return spy


async def test_everything_is_logged_by_default(lines: Lines) -> None:
    app = request_log_middleware(_answering(200))
    for _ in range(5):
        await _call(app)
    assert [line["status"] for line in lines.written] == [200] * 5


async def test_sampling_skips_fast_successes_but_never_errors_or_slow_requests(
    lines: Lines,
) -> None:
    for _ in range(20):
        await _call(request_log_middleware(_answering(200), sample=0.0))
    assert lines.written == []
    await _call(request_log_middleware(_answering(404), sample=0.0))
    await _call(request_log_middleware(_answering(503), sample=0.0))
    await _call(request_log_middleware(_answering(201, delay=0.02), sample=0.0, slow_seconds=0.01))
    assert [line["status"] for line in lines.written] == [404, 503, 201]


async def test_a_sample_writes_about_its_share(lines: Lines) -> None:
    app = request_log_middleware(_answering(200), sample=0.5)
    for _ in range(400):
        await _call(app)
    assert 100 < len(lines.written) < 300


async def test_sampled_requests_still_get_their_request_id(lines: Lines) -> None:
    sent = await _call(request_log_middleware(_answering(200), sample=0.0))
    headers = dict(sent[0]["headers"])
    assert len(headers[b"x-request-id"]) == 22


def test_request_ids_are_distinct_and_fresh_in_a_forked_child() -> None:
    ids = RequestIds()
    seen = {ids.next() for _ in range(1000)}
    assert len(seen) == 1000
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, ids.next().encode())
        os._exit(0)
    os.waitpid(child, 0)
    in_child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert in_child[:12] != ids.next()[:12], "a forked worker draws its own prefix"

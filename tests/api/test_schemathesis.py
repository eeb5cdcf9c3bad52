"""Schemathesis against the shop's own OpenAPI document, over a real HTTP server on the
test PostgreSQL and Redis, as three callers: anonymous, a customer and an admin.

Every check is on: no 5xx, every status documented, every response matching its schema,
the content type declared, no request that is valid by the schema refused, no invalid one
accepted. The default run is bounded (``EXAMPLES`` per operation and caller, about a minute
in all); ``uv run pytest -m fuzz tests/api/test_schemathesis.py`` runs ``FUZZ_EXAMPLES``.

The server is uvicorn in a thread with its own event loop and its own container (the app's
lifespan builds it from the same settings), so the requests cross a real socket while the
test's fixtures keep using the session's event loop and pool.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case
from schemathesis.checks import load_all_checks
from schemathesis.generation import GenerationMode
from schemathesis.hooks import HookContext, HookDispatcher, HookScope

from shop.bootstrap import Container
from shop.config import Settings
from shop.domain.errors import InvalidInput
from shop.domain.identity.model import Role, check_password_policy
from shop.entrypoints.http.app import create_app
from tests.conftest import make_user
from tests.factories import make_category, make_listed_product

EXAMPLES = 12
FUZZ_EXAMPLES = 200
CALLERS = ("anonymous", "customer", "admin")


# Server-sent event streams stay open while a buyer waits (up to an hour), and a
# request/response checker reads a body to its end: a generated buyer who joined a drop that
# has not started would hang the run. tests/api/test_waiting_room.py covers the stream.
STREAMS = ("/queue/events",)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[LiveServer]:
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings=settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="schemathesis-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(base_url=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
async def callers(live_server: LiveServer, container: Container) -> LiveServer:
    """Real accounts (foreign keys hold) and a little catalog, so that generated ids sometimes
    name something that exists."""
    _, customer = await make_user(container, Role.CUSTOMER)
    _, admin = await make_user(container, Role.ADMIN)
    category = await make_category(container, "Fuzzed")
    for _ in range(3):
        await make_listed_product(container, category_ids=[category])
    live_server.headers = {"anonymous": {}, "customer": customer, "admin": admin}
    return live_server


@pytest.fixture(scope="module")
def api_schema(callers: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{callers.base_url}/schema/openapi.json")


@dataclass
class Tally:
    """What a run did, printed with ``-s`` (the closing note quotes these counts)."""

    operations: int = 0
    examples: int = 0
    failures: list[str] = field(default_factory=list)


_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": list(HealthCheck),
    "phases": [Phase.explicit, Phase.generate, Phase.shrink],
}


def _password_policy_holds(context: HookContext, body: Any) -> bool:
    """The one rule no JSON Schema can state as Python states it (``str.islower`` and kin):
    a new password mixes two kinds of characters. Positive data is generated to satisfy it,
    by asking the domain rule itself; the document says it in prose."""
    if not isinstance(body, dict):
        return True
    for field_name in ("password", "new_password"):
        if context.operation is not None and context.operation.path == "/api/auth/login":
            continue
        value = body.get(field_name)
        if isinstance(value, str):
            try:
                check_password_policy(value)
            except InvalidInput:
                return False
    return True


def _no_invented_cursor(context: HookContext, query: Any) -> Any:
    """Cursors are opaque and issued by the server: a made-up one is refused (400) however
    well it fits the schema, so positive data never invents one; negative data still does."""
    if isinstance(query, dict):
        query.pop("cursor", None)
    return query


def _a_new_key_per_request(context: HookContext, headers: Any) -> Any:
    """A client keeps the Idempotency-Key contract: a new key for a new request. (The same
    key with another body is refused with 422, as the IETF Idempotency-Key draft asks.)"""
    if isinstance(headers, dict) and "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return headers


def _a_drop_in_the_future(context: HookContext, body: Any) -> Any:
    """A drop is announced before it starts, and ends after it starts: rules relative to now
    and across two fields, which no JSON Schema states (the document says them in prose).
    Positive data keeps them; negative data still sends any time."""
    path = "" if context.operation is None else context.operation.path
    if path.startswith("/api/admin/drops") and isinstance(body, dict):
        now = datetime.now(UTC)
        if "starts_at" in body:
            body["starts_at"] = (now + timedelta(days=1)).isoformat()
        if body.get("ends_at") is not None:
            body["ends_at"] = (now + timedelta(days=2)).isoformat()
    return body


def _positive_hooks() -> HookDispatcher:
    hooks = HookDispatcher(scope=HookScope.SCHEMA)
    hooks.register_hook_with_name(_password_policy_holds, "filter_body")
    hooks.register_hook_with_name(_no_invented_cursor, "map_query")
    hooks.register_hook_with_name(_a_new_key_per_request, "map_headers")
    hooks.register_hook_with_name(_a_drop_in_the_future, "map_body")
    return hooks


def exercise(api_schema: Any, callers: LiveServer, caller: str, examples: int) -> Tally:
    """Every operation, positive then negative data, ``examples`` cases each; a failing
    operation is recorded (with its shrunk example) and the run goes on to the next."""
    load_all_checks()
    session = requests.Session()
    headers = callers.headers[caller]
    tally = Tally()
    positive = _positive_hooks()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith(STREAMS):
            continue
        tally.operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            hooks = positive if mode is GenerationMode.POSITIVE else None

            @settings(max_examples=examples, **_SETTINGS)
            @given(case=operation.as_strategy(generation_mode=mode, hooks=hooks))
            def one_case(case: Case[Any]) -> None:
                tally.examples += 1
                case.call_and_validate(session=session, headers=headers)

            try:
                one_case()
            except Unsatisfiable:
                continue  # nothing to get wrong: an operation without inputs has no negative data
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                tally.failures.append(f"{caller} {mode.value} {operation.label}: {exc}"[:2000])
    print(
        f"schemathesis[{caller}]: {tally.operations} operations, {tally.examples} examples, "
        f"{len(tally.failures)} failing"
    )
    return tally


@pytest.mark.parametrize("caller", CALLERS)
def test_every_caller_gets_what_the_document_promises(
    api_schema: Any, callers: LiveServer, caller: str
) -> None:
    tally = exercise(api_schema, callers, caller, EXAMPLES)
    assert tally.operations >= 30
    assert not tally.failures, "\n\n".join(tally.failures)


@pytest.mark.fuzz
@pytest.mark.parametrize("caller", CALLERS)
def test_every_caller_gets_what_the_document_promises_at_length(
    api_schema: Any, callers: LiveServer, caller: str
) -> None:
    tally = exercise(api_schema, callers, caller, FUZZ_EXAMPLES)
    assert not tally.failures, "\n\n".join(tally.failures)

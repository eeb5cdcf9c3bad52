"""CPU per request at the HTTP edge: shop's ``GET /api/auth/whoami`` against the bare app.

    uv run python -m benchmarks.edge_profile [--requests 4000] [--rounds 7] [--profile whoami]

Wall-clock req/s on a shared 2-core machine moves by 30% from one run to the next; the CPU
time this process spends per request does not, and it is what the edge (throttle, auth,
request log, guards, framework) costs. So this drives each app in-process through ASGI, one
request after another on a uvloop event loop (as granian runs it), and reports the process CPU
time per request (``time.process_time``): the median and the best of ``--rounds`` rounds. The
shop app is the real one, built by ``create_app`` on a real container, with the throttle on
and talking to a private embedded Redis (and PostgreSQL) started in a temporary directory;
the bare app is ``benchmarks/bare_app.py``. Metrics are written to a multiprocess directory,
as ``shop up`` and ``shop bench`` run the shop. What granian itself costs per request (the socket,
HTTP parsing, the Rust/Python hand-over) is the same for both apps and is not included, so the
ratio here is stricter than the one ``shop bench`` measures over HTTP.

``anon401`` is the same shop GET without a token: counted per address by the throttle, then
refused (401) by auth. ``orderpost`` is shop's real ``POST /api/orders`` (a one-line order
body, an Idempotency-Key, the 201 with the rendered order) whose use case is replaced by one
that answers a fixed order and touches no storage: the floor a purchase over HTTP cannot go
below however cheap its statements get (body decoding, header parameters, rendering,
dependency injection, edge), printed against whoami. ``--profile NAME`` (``whoami``,
``jwt``, ``ping``, ``anon401`` or ``orderpost``) prints the cProfile top functions of one
more round, sorted by own time: where the microseconds go.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import uvloop

SECRET = "edge-profile-secret-not-for-production-0123456789"
Driver = Callable[[], Awaitable[int]]


def _driver(
    app: Any,
    path: str,
    headers: list[tuple[bytes, bytes]],
    expect: int = 200,
    *,
    method: str = "GET",
    body: bytes = b"",
) -> Driver:
    """One request through ``app`` as granian hands it over; returns the response status."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def call() -> int:
        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": list(headers),
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "extensions": {},
            "state": {},
        }
        await app(scope, receive, send)
        if status != expect:
            raise RuntimeError(f"{path} answered {status}, not {expect}")
        return status

    return call


async def _cpu_us_per_request(call: Driver, requests: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        await call()
    return (
        (time.process_time() - cpu) / requests * 1e6,
        (time.perf_counter() - wall) / requests * 1e6,
    )


async def measure(call: Driver, *, requests: int, rounds: int) -> dict[str, float]:
    await _cpu_us_per_request(call, max(200, requests // 4))  # warm-up: caches, JIT-free paths
    cpu, wall = [], []
    for _ in range(rounds):
        round_cpu, round_wall = await _cpu_us_per_request(call, requests)
        cpu.append(round_cpu)
        wall.append(round_wall)
    return {
        "cpu_us_median": round(statistics.median(cpu), 1),
        "cpu_us_best": round(min(cpu), 1),
        "wall_us_median": round(statistics.median(wall), 1),
    }


async def profile(call: Driver, requests: int, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    await _cpu_us_per_request(call, requests)
    profiler.disable()
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


class _StoragelessOrders:
    """The order use cases with ``place`` answering one fixed new order at once (``orderpost``)."""

    def __init__(self, cases: Any) -> None:
        from datetime import UTC, datetime

        from shop.domain.orders.model import OptionPrice, Order, PaymentMethod, Placed, PlaceOrder
        from shop.domain.stock.model import Line

        self._cases = cases
        cmd = PlaceOrder(
            user_id=uuid.uuid4(),
            idempotency_key="edge-profile-0001",
            lines=(Line(1, 1),),
            payment_method=PaymentMethod.CARD,
            shipping_address="1 Bench Street",
        )
        order = Order.place(
            cmd,
            cmd.lines,
            {1: OptionPrice(1, 1, 1999)},
            order_id=uuid.uuid4(),
            now=datetime.now(UTC),
            rules=cases.rules,
        )
        self._placed = Placed(order, created=True)

    async def place(self, cmd: Any) -> Any:
        return self._placed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cases, name)


async def run(args: argparse.Namespace, data_dir: Path) -> None:
    # Imported here, after main() set PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads
    # on import: the histogram then writes its samples to files, as under ``shop up``.
    from shop.bootstrap import Container, resolve_services
    from shop.config import Settings
    from shop.domain.identity.model import Principal, Role
    from shop.entrypoints.http.app import create_app

    fields: dict[str, Any] = {
        "environment": "test",
        "data_dir": str(data_dir),
        "jwt_secret": SECRET,
        "log_level": "WARNING",
        # As ``shop bench`` runs the shop: the throttle on, a quota no caller here reaches.
        "rate_limit_user": "10000000/minute",
        "rate_limit_anonymous": "10000000/minute",
    }
    fields.update(item.split("=", 1) for item in args.set)
    settings, servers = resolve_services(msgspec.convert(fields, Settings, strict=False))
    container = Container.build(settings)
    try:
        token, _ = container.access_tokens.issue(
            Principal(user_id=uuid.uuid4(), role=Role.CUSTOMER)
        )
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"wrk"),
            (b"authorization", f"Bearer {token}".encode()),
        ]
        os.environ["BENCH_JWT_SECRET"] = SECRET
        bare = importlib.import_module("benchmarks.bare_app").app
        shop = create_app(container)
        container.order_cases = _StoragelessOrders(container.order_cases)  # type: ignore[assignment]
        order_body = msgspec.json.encode(
            {
                "lines": [{"option_id": 1, "quantity": 1}],
                "payment_method": "card",
                "shipping_address": "1 Bench Street",
            }
        )
        order_headers = [
            *headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(order_body)).encode()),
            (b"idempotency-key", b"edge-profile-0001"),
        ]
        drivers = {
            "ping": _driver(bare, "/ping", headers),
            "jwt": _driver(bare, "/jwt", headers),
            "whoami": _driver(shop, "/api/auth/whoami", headers),
            # No token: counted per address under the anonymous quota, then 401.
            "anon401": _driver(shop, "/api/auth/whoami", headers[:2], expect=401),
            "orderpost": _driver(
                shop, "/api/orders", order_headers, 201, method="POST", body=order_body
            ),
        }
        figures = {
            name: await measure(call, requests=args.requests, rounds=args.rounds)
            for name, call in drivers.items()
        }
        print(f"{'':8} {'CPU µs/req (median)':>20} {'(best)':>8} {'wall µs/req':>12}")
        for name, row in figures.items():
            print(
                f"{name:8} {row['cpu_us_median']:>20} {row['cpu_us_best']:>8}"
                f" {row['wall_us_median']:>12}"
            )
        ratio = figures["jwt"]["cpu_us_median"] / figures["whoami"]["cpu_us_median"]
        print(f"whoami / bare JWT GET (throughput at equal CPU, granian excluded): {ratio:.2f}")
        floor = figures["orderpost"]["cpu_us_median"] / figures["whoami"]["cpu_us_median"]
        print(f"storage-free POST /api/orders / whoami (a purchase's HTTP floor): {floor:.2f}")
        if args.profile:
            await profile(drivers[args.profile], args.requests, args.top)
    finally:
        await container.close()
        servers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", choices=["whoami", "jwt", "ping", "anon401", "orderpost"])
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a shop setting for this run, e.g. --set rate_limit_enabled=false (repeatable)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shop-edge-") as data_dir:
        metrics = Path(data_dir) / "metrics"
        metrics.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        uvloop.run(run(args, Path(data_dir)))


if __name__ == "__main__":
    main()

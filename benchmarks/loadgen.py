"""The load generator: a separate process that fires HTTP requests and measures them.

Run by ``benchmarks.stock`` as ``python -m benchmarks.loadgen SPEC.json OUT.json``. It keeps
``concurrency`` requests in flight (aiohttp, one keep-alive connection per slot) either for
``duration`` seconds or until ``total`` requests are done, and records every latency and status.
It also reports its own CPU use: when the generator saturates its core, the figure it measured
is the client's limit, not the server's, and the report says so.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class Spec:
    base_url: str
    method: str  # "purchase" or "get"
    path: str
    tokens: list[str]
    option_ids: list[int] = field(default_factory=list)
    quantity: int = 1
    concurrency: int = 64
    duration: float | None = 10.0
    total: int | None = None  # stop after this many requests (sell-out scenario)
    unique_buyers: bool = False  # each request from a different token (one purchase each)
    timeout: float = 10.0


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)  # successful requests only
    statuses: dict[str, int] = field(default_factory=dict)
    timeouts: int = 0
    transport_errors: int = 0


def _body(spec: Spec, rng: random.Random) -> bytes:
    option_id = spec.option_ids[0] if len(spec.option_ids) == 1 else rng.choice(spec.option_ids)
    return json.dumps(
        {
            "lines": [{"option_id": option_id, "quantity": spec.quantity}],
            "payment_method": "card",
            "shipping_address": "1 Benchmark Way, Testville",
        }
    ).encode()


async def _run(spec: Spec) -> tuple[Outcome, float]:
    outcome = Outcome()
    counter = iter(range(10**12))
    stop_at = time.perf_counter() + spec.duration if spec.duration else float("inf")
    connector = aiohttp.TCPConnector(limit=spec.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    url = spec.base_url + spec.path

    async def slot(session: aiohttp.ClientSession, slot_no: int) -> None:
        rng = random.Random(slot_no)
        while True:
            n = next(counter)
            if spec.total is not None and n >= spec.total:
                return
            if time.perf_counter() >= stop_at:
                return
            token = spec.tokens[n % len(spec.tokens)]
            headers = {"Authorization": f"Bearer {token}"}
            started = time.perf_counter()
            try:
                if spec.method == "purchase":
                    headers["Idempotency-Key"] = uuid.uuid4().hex
                    headers["Content-Type"] = "application/json"
                    request = session.post(url, data=_body(spec, rng), headers=headers)
                else:
                    request = session.get(url, headers=headers)
                async with request as response:
                    await response.read()
                    status = str(response.status)
            except TimeoutError:
                outcome.timeouts += 1
                continue
            except aiohttp.ClientError:
                outcome.transport_errors += 1
                continue
            outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
            if status in ("200", "201"):
                outcome.latencies_ms.append((time.perf_counter() - started) * 1000)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(slot(session, i) for i in range(spec.concurrency)))
        elapsed = time.perf_counter() - started
    return outcome, elapsed


def main(spec_path: str, out_path: str) -> None:
    spec = Spec(**json.loads(Path(spec_path).read_text()))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency of litestar[standard]
        pass
    outcome, elapsed = asyncio.run(_run(spec))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (cpu_after.ru_utime - cpu_before.ru_utime) + (
        cpu_after.ru_stime - cpu_before.ru_stime
    )
    result: dict[str, Any] = {
        "elapsed_s": elapsed,
        "latencies_ms": outcome.latencies_ms,
        "statuses": outcome.statuses,
        "timeouts": outcome.timeouts,
        "transport_errors": outcome.transport_errors,
        "client_cpu_fraction": cpu_seconds / elapsed if elapsed else 0.0,
    }
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

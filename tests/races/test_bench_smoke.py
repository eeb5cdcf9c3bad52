"""A tiny run of the stock benchmark: every strategy and scenario end to end over real HTTP.

Correctness only (no timing assertions): nothing oversold, the sell-out sells exactly its
stock, PostgreSQL / the strategy / the ledger agree after the sync, and the results file
has the fields the issue names as the contract.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from benchmarks.stock import STRATEGIES, BenchConfig, run

from tests.strategies import TEST_ONLY

RUN_FIELDS = {
    "strategy",
    "scenario",
    "workers",
    "purchases_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "errors",
    "sold",
    "stock",
    "oversold",
    "consistent",
    "settled",
    "audit",
    "generator",
    "sequential_p50_ms",
    "cpu_percent",
}
RATIOS = {
    "whoami_over_bare_jwt_get",
    "counter_hot_over_whoami",
    "counter_over_db_hot",
    "redlock_hot_over_before",
    "sequential_purchase_over_whoami",
    "worker_rss_mb_max",
    "oversold",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_a_small_benchmark_run_sells_exactly_the_stock(tmp_path: Path) -> None:
    # The benchmark serves from `shop up` subprocesses, which know only the strategies
    # bootstrap registers; the test-only ones registered in tests/conftest.py stay out.
    strategies = tuple(name for name in STRATEGIES if name not in TEST_ONLY)
    out = tmp_path / "results.json"
    config = BenchConfig(
        strategies=strategies,
        workers=(1,),
        concurrency=8,
        duration=1.0,
        sellout_stock=15,
        sellout_buyers=45,
        spread_options=5,
        buyers=10,
        port=_free_port(),
        data_dir=str(tmp_path / "servers"),
        out=out,
        chart=True,
    )
    run(config)

    report = json.loads(out.read_text())
    assert report["ceiling_per_s"] > 0
    # wrk when the machine has it (CI installs it), the built-in generator otherwise.
    timed = "wrk" if shutil.which("wrk") else "aiohttp"
    refs = report["references"]["1"]
    assert set(refs) == {"ping", "jwt_get", "whoami"}
    for ref in refs.values():
        assert ref["generator"] == timed, ref
        assert ref["per_s"] > 0 and ref["sequential_p50_ms"] > 0, ref
    assert set(refs["whoami"]["cpu_percent"]) >= {"worker 1", "postgres", "redis"}
    assert set(report["ratios"]["1"]) >= RATIOS
    assert report["ratios"]["1"]["oversold"] == 0
    assert len(report["runs"]) == len(strategies) * 3
    for r in report["runs"]:
        assert set(r) >= RUN_FIELDS, r
        assert r["oversold"] == 0, r
        assert r["consistent"], r
        assert r["settled"] and r["audit"]["verdict"] == "ok", r
        assert r["errors"] == 0, r
        if r["scenario"] != "sellout":
            assert r["generator"] == timed and r["sequential_p50_ms"] > 0, r
        if r["scenario"] == "sellout":
            assert r["sold"] == r["stock"] == 15, r
            assert r["statuses"].get("409", 0) == 45 - 15, r
        else:
            assert r["sold"] > 0, r
    assert out.with_suffix(".png").stat().st_size > 0

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

from tests.metrics_text import FAMILIES, families, of, value
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


def _assert_a_sale_shows_in_every_family(text: str, strategy: str) -> None:
    """The scrape the bench saved at the end of ``strategy``'s run: every family the issue
    names is there, with values a sale of that strategy produced."""
    assert families(text) >= FAMILIES, FAMILIES - families(text)
    purchases = of(text, "shop_purchases_total")
    outcomes = {dict(labels)["outcome"] for labels in purchases}
    assert outcomes >= {"created", "replayed", "sold_out", "limit", "unavailable", "error"}
    assert value(text, "shop_purchases_total", outcome="created", strategy=strategy) > 0
    # The sell-out scenario turns buyers away once its stock is gone.
    assert value(text, "shop_purchases_total", outcome="sold_out", strategy=strategy) > 0
    assert value(text, "shop_purchases_total", outcome="error", strategy=strategy) == 0
    created = value(
        text,
        "shop_http_request_duration_seconds_count",
        route="/api/orders",
        method="POST",
        status="201",
    )
    assert created >= value(text, "shop_purchases_total", outcome="created", strategy=strategy)
    # Counted from 0 (a sweep every 30 s may not have run in a short run): present, not < 0.
    for counter in ("shop_reservation_sweeps_total", "shop_orders_expired_total"):
        assert of(text, counter).get((), -1.0) >= 0, counter
    assert set(of(text, "shop_payment_events_total")) >= {
        (("event", "payment.succeeded"),),
        (("event", "payment.failed"),),
    }
    assert {dict(labels)["dependency"] for labels in of(text, "shop_dependency_errors_total")} >= {
        "postgres",
        "redis",
    }
    # The write-back runs every second in the bench; the lag is measured against it.
    assert value(text, "shop_stock_syncs_total") > 0
    assert 0 <= value(text, "shop_stock_sync_lag_seconds") < 60
    assert 0 <= value(text, "shop_sale_snapshot_age_seconds") < 10
    on_sale = of(text, "shop_stock_on_sale_units")
    assert on_sale and all(units > 0 for units in on_sale.values()), on_sale
    sold, held, left = (of(text, f"shop_stock_{name}_units") for name in ("sold", "held", "left"))
    assert set(sold) == set(held) == set(left) == set(on_sale)
    assert sum(sold.values()) > 0
    for option, total in on_sale.items():
        assert sold[option] + held[option] + left[option] == total, option
    assert set(of(text, "shop_stock_drift_units").values()) == {0.0}
    assert set(of(text, "shop_stock_oversold_units").values()) == {0.0}


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
    for strategy in strategies:
        scraped = (tmp_path / f"metrics-{strategy}.prom").read_text()
        _assert_a_sale_shows_in_every_family(scraped, strategy)

"""A tiny run of the bench's ``drop`` scenario over real HTTP: correctness only (no timing
assertions): exactly the stock is sold and the stores agree after the sync."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from benchmarks.drop import DropBenchConfig, failed, run_drop

from tests.metrics_text import DROP_FAMILIES, FAMILIES, families, of, value


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_small_drop_benchmark_sells_exactly_the_stock(tmp_path: Path) -> None:
    out = tmp_path / "drop.json"
    result = run_drop(
        DropBenchConfig(
            clients=60,
            stock=12,
            admit_per_second=50,
            concurrency=8,
            duration=1.0,
            workers=1,
            port=_free_port(),
            data_dir=str(tmp_path / "servers"),
            out=out,
        )
    )
    assert not failed(result), result
    saved = json.loads(out.read_text())
    assert saved["sold"] == saved["stock"] == 12
    assert {"polls_per_s", "ceiling_per_s", "ratio_to_ceiling", "exactly_the_stock"} <= set(saved)

    # /metrics as the bench saved it before stopping the shop: the drop's gauges included.
    text = (tmp_path / "metrics-drop-counter.prom").read_text()
    assert families(text) >= FAMILIES | DROP_FAMILIES, (FAMILIES | DROP_FAMILIES) - families(text)
    (labels,) = of(text, "shop_drop_admitted")  # the one drop of this fresh data dir
    drop = dict(labels)["drop_id"]
    assert value(text, "shop_drop_admitted", drop_id=drop) >= 12
    assert value(text, "shop_drop_admission_rate", drop_id=drop) == 50
    assert 0 <= value(text, "shop_drop_queue_length", drop_id=drop) <= 60
    assert value(text, "shop_drop_starts_at_timestamp_seconds", drop_id=drop) > 0
    assert value(text, "shop_purchases_total", outcome="created", strategy="counter") == 12
    assert set(of(text, "shop_stock_oversold_units").values()) == {0.0}
    assert set(of(text, "shop_stock_drift_units").values()) == {0.0}

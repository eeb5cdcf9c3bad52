"""A tiny run of the bench's ``drop`` scenario over real HTTP: correctness only (no timing
assertions): exactly the stock is sold and the stores agree after the sync."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from benchmarks.drop import DropBenchConfig, failed, run_drop


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

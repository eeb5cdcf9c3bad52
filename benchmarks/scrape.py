"""What ``/metrics`` said at the end of a benchmark run, kept beside the results.

Each run's shop is stopped (and its multiprocess samples emptied by the next start) right
after it, so the scrape is taken while it still serves: ``metrics-<strategy>.prom`` (and
``metrics-drop-<strategy>.prom`` for the drop scenario) is the evidence that every family an
operator alerts on was exposed, with the values a real sale produced.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

# The worker's sale snapshot (behind the stock gauges) is taken every second: waiting a bit
# longer than that makes the gauges show the end of the run, not a second before it.
SNAPSHOT_WAIT_S = 1.5


def save_metrics(port: int, path: Path, *, token: str | None = None) -> Path:
    """Scrape the shop on ``port`` into ``path`` (``SHOP_METRICS_TOKEN`` as ``token``)."""
    time.sleep(SNAPSHOT_WAIT_S)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        body: bytes = answer.read()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path

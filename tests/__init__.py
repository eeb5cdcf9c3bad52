"""The test package. Imported before any conftest, hence before ``prometheus_client``.

prometheus-client picks multiprocess mode once, at import, from ``PROMETHEUS_MULTIPROC_DIR``:
the run gets a fresh, empty directory of its own here, so the tests count metrics the way
``shop up`` does (across processes) and never add up another run's samples.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_METRICS_DIR = tempfile.mkdtemp(prefix="shop-test-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _METRICS_DIR
atexit.register(shutil.rmtree, _METRICS_DIR, ignore_errors=True)

"""A real shop (granian + the SAQ worker, as ``shop up`` runs them) and a real headless
Chromium driven by playwright.

The browser is Debian's ``chromium`` (``.ci/run`` installs it), never one playwright
downloads: the tests must run where nothing can be fetched. Each test saves a PNG under
``tests/artifacts/screens/`` (git-ignored) to show what the page looked like.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from shop.config import Settings
from shop.entrypoints.cli.server import WORKER_MODULE, api_command, metrics_environment

SCREENS = Path(__file__).resolve().parents[1] / "artifacts" / "screens"
CHROMIUM = os.environ.get("SHOP_TEST_CHROMIUM") or shutil.which("chromium")


@dataclass(frozen=True)
class LiveShop:
    base_url: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_serving(base_url: str, api: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.poll() is not None:
            raise RuntimeError("the API exited during start-up")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the API did not come up")


@pytest.fixture(scope="module")
def live_shop(settings: Settings) -> Iterator[LiveShop]:
    """The API on a free port and the worker taking a sale snapshot every second, on the
    test run's PostgreSQL and Redis."""
    assert settings.database_url is not None and settings.redis_url is not None
    port = _free_port()
    env = {
        **os.environ,
        "SHOP_DATABASE_URL": settings.database_url,
        "SHOP_REDIS_URL": settings.redis_url,
        "SHOP_DATA_DIR": settings.data_dir,
        "SHOP_JWT_SECRET": settings.jwt_secret or "",
        "SHOP_STOCK_STRATEGY": settings.stock_strategy,
        "SHOP_RATE_LIMIT_ENABLED": "false",
        "SHOP_LOG_LEVEL": "WARNING",
        "SHOP_SALE_SNAPSHOT_INTERVAL": "1",
        **metrics_environment(Path(settings.data_dir)),
    }
    api = subprocess.Popen(api_command("127.0.0.1", port, 1), env=env)
    worker = subprocess.Popen([sys.executable, "-m", WORKER_MODULE], env=env)
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_serving(base_url, api)
        yield LiveShop(base_url)
    finally:
        for process in (api, worker):
            process.terminate()
        for process in (api, worker):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's)")
    SCREENS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()

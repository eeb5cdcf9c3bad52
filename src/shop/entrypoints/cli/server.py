"""``shop up`` (API + worker in one command) and ``shop migrate``.

``up`` owns the embedded servers (when no URLs are configured) and supervises two children:
granian serving the API with N worker processes, and the SAQ worker. Children get the
resolved URLs in their environment, so they join the same servers instead of starting new
ones. A dead web worker is replaced by granian, a dead child by ``up`` (supervisor.py), so one
crashed process never takes the shop down. Ctrl-C (or SIGTERM) stops the children first, then
the servers: nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType

import click

from shop.adapters.db import migrations
from shop.bootstrap import prepare_multiprocess_dir, require_urls
from shop.entrypoints.cli.context import resolved_settings
from shop.entrypoints.cli.supervisor import Child, CrashLoop, Supervisor

WORKER_MODULE = "shop.entrypoints.workers"

CHILD_STOP_TIMEOUT = 15.0
# Below CHILD_STOP_TIMEOUT, so granian kills its stuck workers before shop up kills granian.
WORKERS_KILL_TIMEOUT = 10
STARTUP_TIMEOUT = 60.0
TICK = 0.2


@click.command()
def migrate() -> None:
    """Apply database migrations (Alembic revisions in migrations/)."""
    settings, servers = resolved_settings()
    try:
        database_url, _ = require_urls(settings)
        migrations.upgrade(database_url)
        click.echo(f"database at revision {migrations.current(database_url)}")
    finally:
        servers.stop()


def metrics_environment(data_path: Path) -> dict[str, str]:
    """``PROMETHEUS_MULTIPROC_DIR`` for the children, emptied now: every granian worker and
    the SAQ worker write their samples there, and ``/metrics`` in any of them adds them all
    up. Always ``<data dir>/metrics`` (never an inherited value), so two shops, or a shop
    started by a test run, never share or wipe each other's samples."""
    directory = prepare_multiprocess_dir(data_path / "metrics")
    return {"PROMETHEUS_MULTIPROC_DIR": str(directory)}


def _serving(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def api_command(host: str, port: int, workers: int) -> list[str]:
    """The HTTP API as ``shop up`` (and the benchmark) run it: granian on ``create_app``.

    Granian replaces a worker that dies (``--respawn-failed-workers``: at once, the other
    workers keep serving meanwhile); a worker that dies again within ~5 s of its respawn makes
    granian exit, and then ``shop up`` restarts granian as a whole, with backoff. A worker
    that ignores SIGTERM on shutdown is killed after ``WORKERS_KILL_TIMEOUT`` seconds instead
    of holding the stop forever.
    """
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--no-ws", "--log-level", "warning", "--backlog", "2048",
        "--respawn-failed-workers", "--workers-kill-timeout", str(WORKERS_KILL_TIMEOUT),
        "shop.entrypoints.http.app:create_app",
    ]  # fmt: skip


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="HTTP worker processes (granian).",
)
@click.option("--no-worker", is_flag=True, help="Do not start the SAQ background worker.")
def up(host: str, port: int, workers: int, no_worker: bool) -> None:
    """Migrate, then serve the API and run the background worker until Ctrl-C.

    A web worker that dies is replaced by granian; granian or the worker dying as a whole is
    restarted here (see supervisor.py). Only a crash loop, or Ctrl-C / SIGTERM, ends it.
    """
    settings, servers = resolved_settings()
    stopping = threading.Event()
    supervisor: Supervisor | None = None

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    try:
        database_url, redis_url = require_urls(settings)
        migrations.upgrade(database_url)
        env = {
            **os.environ,
            "SHOP_DATABASE_URL": database_url,
            "SHOP_REDIS_URL": redis_url,
            "SHOP_DATA_DIR": str(settings.data_path),
            **metrics_environment(settings.data_path),
        }
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        children = [Child("api", api_command(host, port, workers), env, watch_workers=True)]
        if not no_worker:
            children.append(Child("worker", [sys.executable, "-m", WORKER_MODULE], env))
        supervisor = Supervisor(children, stopping=stopping)
        supervisor.start()
        base_url = f"http://{host}:{port}"
        announced = False
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not stopping.wait(TICK):
            supervisor.check()
            if announced:
                continue
            if _serving(base_url):
                announced = True
                click.secho(f"shop is serving at {base_url}", fg="green", bold=True)
                click.echo(
                    f"API docs:      {base_url}/docs   (OpenAPI: {base_url}/schema/openapi.json)"
                )
                click.echo(f"Live sale:     {base_url}/admin/   (metrics: {base_url}/metrics)")
                click.echo("Press Ctrl-C to stop.")
            elif time.monotonic() > deadline:
                raise click.ClickException("the API did not come up; see the log above")
        click.echo("stopping…")
    except CrashLoop as exc:
        raise click.ClickException(f"{exc}; see the log above") from None
    finally:
        if supervisor is not None:
            supervisor.stop(CHILD_STOP_TIMEOUT)
        servers.stop()

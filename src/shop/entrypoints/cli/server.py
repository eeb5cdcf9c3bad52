"""``shop up`` (API + worker in one command) and ``shop migrate``.

``up`` owns the embedded servers (when no URLs are configured) and supervises two children:
granian serving the API with N worker processes, and the SAQ worker. Children get the
resolved URLs in their environment, so they join the same servers instead of starting new
ones. Ctrl-C (or SIGTERM) stops the children first, then the servers: nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from types import FrameType

import click

from shop.adapters.db import migrations
from shop.bootstrap import require_urls
from shop.entrypoints.cli.context import resolved_settings

CHILD_STOP_TIMEOUT = 15.0


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


def _wait_until_serving(base_url: str, children: list[subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return False
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def api_command(host: str, port: int, workers: int) -> list[str]:
    """The HTTP API as ``shop up`` (and the benchmark) run it: granian on ``create_app``."""
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--no-ws", "--log-level", "warning", "--backlog", "2048",
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
    """Migrate, then serve the API and run the background worker until Ctrl-C."""
    settings, servers = resolved_settings()
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    try:
        database_url, redis_url = require_urls(settings)
        migrations.upgrade(database_url)
        env = {
            **os.environ,
            "SHOP_DATABASE_URL": database_url,
            "SHOP_REDIS_URL": redis_url,
            "SHOP_DATA_DIR": str(settings.data_path),
        }
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        children.append(subprocess.Popen(api_command(host, port, workers), env=env))
        if not no_worker:
            children.append(
                subprocess.Popen([sys.executable, "-m", "shop.entrypoints.workers"], env=env)
            )
        base_url = f"http://{host}:{port}"
        if not _wait_until_serving(base_url, children):
            raise click.ClickException("the API did not come up; see the log above")
        click.secho(f"shop is serving at {base_url}", fg="green", bold=True)
        click.echo(f"API docs:      {base_url}/docs   (OpenAPI: {base_url}/schema/openapi.json)")
        click.echo("Press Ctrl-C to stop.")
        while not stopping:
            if any(child.poll() is not None for child in children):
                raise click.ClickException("a child process exited unexpectedly; stopping")
            time.sleep(0.2)
        click.echo("stopping…")
    finally:
        _stop(children)
        servers.stop()

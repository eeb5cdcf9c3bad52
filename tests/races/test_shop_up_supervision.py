"""``shop up`` as an operator runs it, with processes killed under it: one crashed process
never takes the shop down, and stopping it leaves nothing behind.

A real ``shop up`` subprocess on this run's servers; processes are found with psutil and
killed with SIGKILL. Deadlines are generous (CI has two busy cores): they bound a hang, they
do not measure speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import TEST_JWT_SECRET

pytestmark = pytest.mark.slow

DEADLINE = 60.0
SAQ_WORKER = "shop.entrypoints.workers"  # as it appears on the SAQ worker's command line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _health(base_url: str) -> int | str:
    """The status of one ``GET /health`` on a fresh connection, or what went wrong."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=10) as response:
            return int(response.status)
    except OSError as exc:
        return repr(exc)


class ShopUp:
    """A running ``shop up`` and the processes under it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = log
        self.root = psutil.Process(process.pid)
        self.seen: dict[int, psutil.Process] = {}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        try:
            found = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen.update({p.pid: p for p in found})
        return [p for p in found if _alive(p)]

    def _child(self, marker: str) -> psutil.Process | None:
        try:
            children = self.root.children()
        except psutil.NoSuchProcess:
            return None
        for child in children:
            try:
                if _alive(child) and marker in " ".join(child.cmdline()):
                    self.seen[child.pid] = child
                    return child
            except psutil.NoSuchProcess:
                continue
        return None

    def api_master(self) -> psutil.Process | None:
        return self._child("granian")

    def saq_worker(self) -> psutil.Process | None:
        return self._child(SAQ_WORKER)

    def web_workers(self) -> list[psutil.Process]:
        master = self.api_master()
        if master is None:
            return []
        try:
            workers = [p for p in master.children() if _alive(p)]
        except psutil.NoSuchProcess:
            return []
        self.seen.update({p.pid: p for p in workers})
        return workers

    def listening(self, worker: psutil.Process) -> bool:
        """Whether the worker serves: granian binds each worker's own SO_REUSEPORT socket
        once the app is loaded, so a worker process can exist long before it answers."""
        try:
            sockets = worker.net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(s.status == psutil.CONN_LISTEN and s.laddr.port == self.port for s in sockets)

    def serving_workers(self) -> list[psutil.Process]:
        return [p for p in self.web_workers() if self.listening(p)]

    def eventually(self, what: str, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (
                f"shop up exited while waiting for {what}:\n" + (self.output()[-4000:])
            )
            if check():
                return
            time.sleep(0.2)
        raise AssertionError(f"no {what} within {DEADLINE:g}s:\n{self.output()[-4000:]}")

    def wait_until_up(self, workers: int, *, saq_worker: bool) -> None:
        self.eventually("answer on /health", lambda: _health(self.base_url) == 200)
        self.eventually(
            f"{workers} serving web workers", lambda: len(self.serving_workers()) == workers
        )
        if saq_worker:
            self.eventually("SAQ worker", lambda: self.saq_worker() is not None)

    def stop_with(self, signum: int) -> None:
        """Stop ``shop up`` as a user does; assert it exits cleanly and leaves nothing."""
        everything = self.descendants()
        assert everything, "shop up should have children before it is stopped"
        self.process.send_signal(signum)
        code = self.process.wait(DEADLINE)
        assert code == 0, self.output()[-4000:]
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in everything) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [(p.pid, p.cmdline()) for p in everything if _alive(p)]
        assert not left, f"processes left behind after {signal.Signals(signum).name}: {left}"

    def kill_everything(self) -> None:
        """Teardown after a failure: no process of this test may outlive it."""
        self.descendants()
        for process in [self.root, *self.seen.values()]:
            if _alive(process):
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


@pytest.fixture
def start_shop(
    database_url: str, redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., ShopUp]]:
    started: list[ShopUp] = []

    def start(*options: str) -> ShopUp:
        port = _free_port()
        env = {
            **os.environ,
            "SHOP_ENVIRONMENT": "test",
            "SHOP_DATABASE_URL": database_url,
            "SHOP_REDIS_URL": redis_url,
            "SHOP_JWT_SECRET": TEST_JWT_SECRET,
            "SHOP_DATA_DIR": str(tmp_path / "data"),
            "SHOP_LOG_LEVEL": "INFO",
            "SHOP_STOCK_STRATEGY": "db",
        }
        log = tmp_path / f"shop-up-{len(started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "shop"), "up", "--port", str(port), *options],
                env=env,
                cwd=tmp_path,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        shop = ShopUp(process, port, log)
        started.append(shop)
        return shop

    yield start
    for shop in started:
        shop.kill_everything()


def test_a_killed_web_worker_and_the_killed_job_worker_are_replaced_while_the_shop_serves(
    start_shop: Callable[..., ShopUp],
) -> None:
    shop = start_shop("--workers", "2")
    shop.wait_until_up(2, saq_worker=True)

    victim, survivor = shop.web_workers()
    victim.kill()
    # Connections the kernel had already queued on the victim's socket die with it (unless
    # net.ipv4.tcp_migrate_req=1); once it is gone, every request must be answered.
    shop.eventually("killed worker to be gone", lambda: not _alive(victim))
    answers: list[int | str] = []

    def replaced() -> bool:
        answers.append(_health(shop.base_url))
        pids = {p.pid for p in shop.serving_workers()}
        return len(answers) >= 10 and len(pids) == 2 and victim.pid not in pids

    shop.eventually("replacement web worker", replaced)
    # The dead worker's listening socket can outlive the process by a moment (the kernel
    # closes it after the process is reaped), so a connection or two made right then may be
    # reset; from the first answer on, every request must be answered.
    first = next(i for i, answer in enumerate(answers) if answer == 200)
    assert first <= 2, f"/health failed with one worker down: {answers}"
    assert set(answers[first:]) == {200}, f"/health failed with one worker down: {answers}"
    assert _alive(survivor), "the other worker must not be touched"
    assert "web worker replaced" in shop.output()

    job_worker = shop.saq_worker()
    assert job_worker is not None
    job_worker.kill()
    shop.eventually(
        "restarted SAQ worker",
        lambda: (new := shop.saq_worker()) is not None and new.pid != job_worker.pid,
    )
    assert "child restarted" in shop.output()
    assert _health(shop.base_url) == 200

    shop.stop_with(signal.SIGTERM)


def test_a_killed_api_master_is_restarted_and_its_orphaned_workers_stopped(
    start_shop: Callable[..., ShopUp],
) -> None:
    shop = start_shop("--workers", "2", "--no-worker")
    shop.wait_until_up(2, saq_worker=False)
    master = shop.api_master()
    assert master is not None
    orphans = shop.web_workers()

    master.kill()
    shop.eventually(
        "new API master with 2 workers",
        lambda: (
            (new := shop.api_master()) is not None
            and new.pid != master.pid
            and len(shop.serving_workers()) == 2
        ),
    )
    shop.eventually("old master's workers to stop", lambda: not any(map(_alive, orphans)))
    shop.eventually("answer on /health", lambda: _health(shop.base_url) == 200)
    assert "child restarted" in shop.output()

    shop.stop_with(signal.SIGINT)


def test_children_stop_when_shop_up_itself_is_killed(start_shop: Callable[..., ShopUp]) -> None:
    shop = start_shop("--workers", "1")
    shop.wait_until_up(1, saq_worker=True)
    everything = shop.descendants()

    shop.process.kill()
    shop.process.wait(DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while any(_alive(p) for p in everything) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [(p.pid, p.cmdline()) for p in everything if _alive(p)]
    assert not left, f"children outlived a killed shop up: {left}"

"""Keep ``shop up``'s children alive: restart one that dies, but do not feed a crash loop.

Two layers replace dead processes. Granian replaces its own dead web workers
(``--respawn-failed-workers``, see ``server.api_command``); this module restarts a whole child
(granian's master, the SAQ worker) that exits while nobody asked it to, after a backoff that
grows while the child keeps dying soon after its start, and gives up after a bounded number
of such rapid failures rather than spinning.

Each child leads its own process group. A granian master killed with ``kill -9`` does not take
its workers with it: they keep the shared socket and go on serving, unsupervised, beside the
next master's workers. Signalling the dead master's group stops them. The group also means
Ctrl-C at the terminal reaches ``shop up`` alone, which then stops the children in order; and
since the children no longer share ``shop up``'s group, each is told by the kernel
(``PR_SET_PDEATHSIG``, Linux) to stop if ``shop up`` itself dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import psutil

from shop.logs import get_logger

_log = get_logger("shop.supervisor")

_PR_SET_PDEATHSIG = 1


class CrashLoop(RuntimeError):
    """A child kept dying right after being started; restarting it again would not help."""


@dataclass
class RestartPolicy:
    """How long to wait before restarting a child that exited, and when to stop trying.

    A child that ran for ``stable_after`` seconds was healthy: its death is a fresh incident
    and it is restarted after ``base_delay``. Each death sooner than that after a start doubles
    the delay (up to ``max_delay``); more than ``max_rapid_failures`` in a row is a crash loop.
    """

    base_delay: float = 0.5
    max_delay: float = 10.0
    stable_after: float = 30.0
    max_rapid_failures: int = 5
    rapid_failures: int = 0

    def delay_after(self, uptime: float) -> float | None:
        """Seconds to wait before the next start, or None to give up."""
        if uptime >= self.stable_after:
            self.rapid_failures = 0
        self.rapid_failures += 1
        if self.rapid_failures > self.max_rapid_failures:
            return None
        return min(self.base_delay * 2.0 ** (self.rapid_failures - 1), self.max_delay)


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel for SIGTERM when ``shop up`` dies (the request
    survives the exec that follows). Resolved here, so the forked child only makes one call."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def stop_with_parent() -> None:  # pragma: no cover - runs in the forked child
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return stop_with_parent


def _describe(code: int) -> str:
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class Child:
    """One command ``shop up`` keeps running, in a process group of its own."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        policy: RestartPolicy | None = None,
        watch_workers: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.policy = policy or RestartPolicy()
        self.watch_workers = watch_workers
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.last_exit: int | None = None
        self._workers: set[int] = set()
        self._unreplaced = 0

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            process_group=0,
            preexec_fn=_parent_death_hook(),
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        self._workers = set()
        self._unreplaced = 0
        _log.info("child started", child=self.name, pid=self.process.pid)

    def signal_group(self, signum: int) -> None:
        """Signal the child and whatever it left in its group (e.g. a dead master's workers)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def watch(self) -> None:
        """Log web workers dying and being replaced under a live master (granian does the
        replacing; this makes each replacement visible in ``shop up``'s own log)."""
        if not self.watch_workers or self.process is None:
            return
        try:
            current = {p.pid for p in psutil.Process(self.process.pid).children()}
        except psutil.Error:
            return
        for pid in sorted(self._workers - current):
            self._unreplaced += 1
            _log.warning("web worker exited; granian replaces it", child=self.name, pid=pid)
        for pid in sorted(current - self._workers):
            if self._unreplaced:
                self._unreplaced -= 1
                _log.warning("web worker replaced", child=self.name, pid=pid)
            else:
                _log.info("web worker running", child=self.name, pid=pid)
        self._workers = current


class Supervisor:
    """Starts the children, restarts the ones that die, stops them all on request."""

    def __init__(self, children: Sequence[Child], *, stopping: threading.Event) -> None:
        self.children = list(children)
        self.stopping = stopping

    def start(self) -> None:
        for child in self.children:
            child.start()

    def check(self) -> None:
        """One supervision step: notice deaths, start due replacements. Raises CrashLoop."""
        for child in self.children:
            if self.stopping.is_set():
                return
            if child.running():
                child.watch()
            elif child.restart_at is None:
                self._schedule_restart(child, time.monotonic())
            elif time.monotonic() >= child.restart_at:
                # The dead child's group had restart_at's delay to drain after SIGTERM.
                child.signal_group(signal.SIGKILL)
                child.start()
                _log.warning(
                    "child restarted",
                    child=child.name,
                    pid=child.pid,
                    previous_exit_code=child.last_exit,
                )

    def _schedule_restart(self, child: Child, now: float) -> None:
        assert child.process is not None
        code = child.process.returncode
        child.last_exit = code
        child.signal_group(signal.SIGTERM)
        uptime = now - child.started_at
        delay = child.policy.delay_after(uptime)
        cause = _describe(code)
        if delay is None:
            _log.error(
                "child keeps dying; giving up", child=child.name, pid=child.pid, exit_code=code
            )
            raise CrashLoop(
                f"{child.name} died {child.policy.rapid_failures} times in a row within "
                f"{child.policy.stable_after:g}s of starting (last: {cause}); giving up"
            )
        _log.warning(
            "child exited unexpectedly; restarting",
            child=child.name,
            pid=child.pid,
            exit_code=code,
            cause=cause,
            uptime_s=round(uptime, 1),
            restart_in_s=delay,
        )
        child.restart_at = now + delay

    def stop(self, timeout: float) -> None:
        """SIGTERM every child (each stops its own workers), SIGKILL what outlives ``timeout``,
        then sweep every group so that nothing is left behind."""
        live = [child for child in self.children if child.running()]
        for child in live:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in live:
            assert child.process is not None
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log.warning("child did not stop in time; killing it", child=child.name)
                child.process.kill()
                child.process.wait()
        for child in self.children:
            child.signal_group(signal.SIGKILL)

"""``shop up``'s restart rules: back off while a child keeps dying, give up on a crash loop."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import pytest

from shop.entrypoints.cli.supervisor import Child, CrashLoop, RestartPolicy, Supervisor


def test_rapid_failures_double_the_delay_up_to_the_cap_then_give_up() -> None:
    policy = RestartPolicy(base_delay=0.5, max_delay=3.0, stable_after=30, max_rapid_failures=5)
    delays = [policy.delay_after(uptime=1.0) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, None]


def test_a_child_that_ran_long_enough_starts_a_fresh_count() -> None:
    policy = RestartPolicy(base_delay=0.5, stable_after=30, max_rapid_failures=2)
    assert policy.delay_after(uptime=1.0) == 0.5
    assert policy.delay_after(uptime=1.0) == 1.0
    assert policy.delay_after(uptime=31.0) == 0.5
    assert policy.delay_after(uptime=1.0) == 1.0
    assert policy.delay_after(uptime=1.0) is None


def _supervise_until(
    supervisor: Supervisor, done: Callable[[], bool] | None, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        if done is not None and done():
            return
        time.sleep(0.02)
    raise AssertionError("supervision did not reach the expected state in time")


def test_a_child_that_keeps_dying_is_restarted_with_backoff_then_given_up_on() -> None:
    policy = RestartPolicy(base_delay=0.01, max_delay=0.05, max_rapid_failures=3)
    child = Child("flaky", [sys.executable, "-c", "raise SystemExit(3)"], {}, policy=policy)
    supervisor = Supervisor([child], stopping=threading.Event())
    supervisor.start()
    with pytest.raises(CrashLoop, match=r"flaky died 4 times in a row .*exit code 3"):
        _supervise_until(supervisor, done=None)
    supervisor.stop(timeout=5)


def test_a_dead_child_is_restarted_and_stop_ends_the_new_one() -> None:
    child = Child(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        {},
        policy=RestartPolicy(base_delay=0.01),
    )
    supervisor = Supervisor([child], stopping=threading.Event())
    supervisor.start()
    assert child.process is not None
    first = child.process
    first.kill()
    _supervise_until(supervisor, done=lambda: child.process is not first and child.running())
    assert child.last_exit == -9

    supervisor.stop(timeout=5)
    assert not child.running()


def test_nothing_is_restarted_once_stopping() -> None:
    stopping = threading.Event()
    child = Child("short", [sys.executable, "-c", "pass"], {}, policy=RestartPolicy(base_delay=0))
    supervisor = Supervisor([child], stopping=stopping)
    supervisor.start()
    assert child.process is not None
    child.process.wait(10)
    stopping.set()
    supervisor.check()
    assert child.restart_at is None and child.last_exit is None

"""The coalescer batches what arrives while a batch is in flight, answers each caller with
its own outcome, and never holds a lone call back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from shop.adapters.coalescing import Coalescer


class Recorder:
    """A ``run`` that records its batches and waits for ``release`` before answering."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(items)
        await self.release.wait()
        return [ValueError(str(i)) if i < 0 else i * 10 for i in items]


async def test_a_lone_call_goes_at_once() -> None:
    run = Recorder()
    coalescer = Coalescer(run)
    assert await coalescer.submit(1) == 10
    assert await coalescer.submit(2) == 20
    assert run.batches == [[1], [2]]


async def test_calls_arriving_during_a_batch_go_together_next() -> None:
    run = Recorder()
    run.release.clear()
    coalescer: Coalescer[int, int] = Coalescer(run)
    first = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert run.batches == [[1]]
    rest = [asyncio.create_task(coalescer.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    assert coalescer.waiting == 3
    run.release.set()
    assert await first == 10
    assert [await task for task in rest] == [20, 30, 40]
    assert run.batches == [[1], [2, 3, 4]]


async def test_each_caller_gets_its_own_exception() -> None:
    coalescer = Coalescer(Recorder())
    results = await asyncio.gather(
        coalescer.submit(1), coalescer.submit(-2), coalescer.submit(3), return_exceptions=True
    )
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], ValueError) and str(results[1]) == "-2"


async def test_a_failing_batch_fails_its_items_only() -> None:
    calls = 0

    async def run(items: list[int]) -> Sequence[int | BaseException]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("gone")
        return items

    coalescer = Coalescer(run)
    with pytest.raises(ConnectionError):
        await coalescer.submit(1)
    assert await coalescer.submit(2) == 2


async def test_batches_are_capped_and_in_order() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_batch=2)
    assert await asyncio.gather(*(coalescer.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert run.batches == [[0, 1], [2, 3], [4]]


async def test_a_cancelled_caller_does_not_cancel_the_batch() -> None:
    run = Recorder()
    run.release.clear()
    coalescer = Coalescer(run)
    gone = asyncio.create_task(coalescer.submit(1))
    stays = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gone.cancel()
    run.release.set()
    assert await stays == 20
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert run.batches == [[1, 2]]


async def test_a_caller_cancelled_while_queued_is_not_sent() -> None:
    run = Recorder()
    run.release.clear()
    coalescer = Coalescer(run)
    first = asyncio.create_task(coalescer.submit(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    queued = [asyncio.create_task(coalescer.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    queued[0].cancel()
    await asyncio.sleep(0)
    run.release.set()
    assert await first == 10
    assert await queued[1] == 30
    assert run.batches == [[1], [3]]


async def test_a_wrong_number_of_outcomes_is_every_items_error() -> None:
    async def run(items: list[int]) -> Sequence[int | BaseException]:
        return items[:-1]

    coalescer = Coalescer(run)
    with pytest.raises(RuntimeError, match="2 came back with 1"):
        await asyncio.gather(coalescer.submit(1), coalescer.submit(2))


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        Coalescer(Recorder(), max_batch=0)


def test_a_coalescer_outlives_its_event_loop() -> None:
    """A batch left in flight by a loop closed without cancelling its tasks (``run_until_complete``
    then ``close``) must not block the next loop's calls."""
    run = Recorder()
    coalescer = Coalescer(run)

    async def leave_one_in_flight() -> None:
        run.release.clear()
        asyncio.get_running_loop().create_task(coalescer.submit(1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    old = asyncio.new_event_loop()
    old.run_until_complete(leave_one_in_flight())
    old.close()
    run.release = asyncio.Event()
    run.release.set()
    assert asyncio.run(asyncio.wait_for(coalescer.submit(2), 2)) == 20
    for task in asyncio.all_tasks(old):  # what the closed loop left: ended here, not by the GC
        with contextlib.suppress(RuntimeError):
            task.get_coro().close()

"""``Coalescer``: the concurrent calls of one process sent to a server together.

At saturation a purchase spends more CPU on round trips (a pool checkout, a socket write, a
wake-up per statement or script) than on what the server does with them, and PostgreSQL spends
more on a statement per order than on the rows. Group commit is the classic answer: calls
that arrive while a batch is in flight wait for it to return, then go as the next batch, in
one statement or one pipeline. Nothing waits for a timer: an idle process sends a lone call at
once (one task switch later, so the calls of one event-loop turn still share a batch), and
batches grow only as load does. So sequential latency is unchanged and a saturated process
sends a round trip per batch, not per call.

Each call gets its own answer or its own exception: ``run`` returns one outcome per item, in
order, and an exception it raises is every item's. A caller that is cancelled while its batch
is in flight does not cancel it (the other callers' items are in it); its item's outcome is
dropped, as a statement that reached the server before its caller went away would be. One
cancelled while still queued is left out of the next batch.

What is lost: the batch runs in the coalescer's task, not the caller's, so context variables
(the request id in a log line, the current trace span) are those of the first caller of the
process's first batch. Adapters log and trace per item where it matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Coalescer(Generic[In, Out]):
    """Batches concurrent ``submit`` calls for ``run``: at most ``in_flight`` batches at a
    time, each of at most ``max_batch`` items, in the order they were submitted."""

    def __init__(
        self,
        run: Callable[[list[In]], Awaitable[Sequence[Out | BaseException]]],
        *,
        max_batch: int = 256,
        in_flight: int = 1,
    ) -> None:
        if max_batch < 1 or in_flight < 1:
            raise ValueError("max_batch and in_flight must be at least 1")
        self._run = run
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._draining = 0  # counted in ``_drain`` itself: a finished one frees its slot at once
        self._tasks: set[asyncio.Task[None]] = set()  # strong references, or a task may vanish
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A container used by one ``asyncio.run`` after another (a CLI command, the
            # bench's set-up): what an earlier loop left queued or in flight died with it.
            self._loop, self._waiting, self._draining = loop, [], 0
        future: asyncio.Future[Out] = loop.create_future()
        self._waiting.append((item, future))
        if self._draining < self._in_flight:
            self._start()
        return await future  # cancelling it leaves the batch running, without this item

    def _start(self) -> None:
        self._draining += 1
        task = asyncio.get_running_loop().create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        """Send batches until nobody is waiting (the task starts one loop turn after the
        first call, so the calls of that turn are its first batch)."""
        try:
            await self._send_all()
        finally:
            self._draining -= 1

    async def _send_all(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            # A caller cancelled before its batch left is not sent for: its order (say) is
            # not written, as a statement still waiting for a pooled connection would not be.
            batch = [(item, future) for item, future in batch if not future.done()]
            if not batch:
                continue
            try:
                outcomes = await self._run([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(
                        f"a batch of {len(batch)} came back with {len(outcomes)} outcomes"
                    )
            except BaseException as exc:  # every item's, cancellation included
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch in flight: the coalescer may be dropped."""
        return not self._waiting and not self._draining

    @property
    def waiting(self) -> int:
        """Items submitted and not yet sent (for tests and metrics)."""
        return len(self._waiting)

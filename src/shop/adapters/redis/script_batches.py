"""``ScriptBatches``: the Lua scripts of concurrent callers sent to Redis in one pipeline.

A counter purchase runs two scripts (``reserve``, then ``confirm``), each a round trip of its
own: a pool checkout, a socket write, a read and a wake-up, about a quarter of the purchase's
CPU, against some tens of microseconds of work inside Redis. Under load many purchases of a
process are at one of those steps at the same time, so their scripts go through a
``Coalescer``: a lone call is sent at once, and the calls that arrive while a batch is in
flight go together as the next one, in one pipeline.

The pipeline is not a transaction (``transaction=False``): each script is atomic on its own,
as it is when sent alone, and a batch only shares the round trip: another client's commands
may run between two scripts of a batch, and no caller relies on their order. Each caller gets
its own script's answer, or the ``ResponseError`` its script raised
(``raise_on_error=False``); a failure of the connection (Redis down, a timeout) is every
caller's, the same exception each would have got alone.

NOSCRIPT. The scripts are sent as EVALSHA without the pipeline's own preflight
(``SCRIPT EXISTS`` before every batch, a second round trip), so a Redis that forgot them (a
restart, a ``SCRIPT FLUSH``) answers NOSCRIPT to each: they are loaded once and those calls
sent again, as ``Script.__call__`` does for a call alone. A batch of one goes through
``Script.__call__`` itself, so a lone call costs what it did before batching.

What batching changes for the operator: the redis instrumentation traces one span per
batch, in the context of the batch's task (see ``coalescing``), not one per script in its
request's trace; ``TracedStock`` still traces each stock operation in its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from shop.adapters.coalescing import Coalescer


@dataclass(frozen=True, slots=True)
class _Call:
    script: AsyncScript
    keys: Sequence[Any]
    args: Sequence[Any]


class ScriptBatches:
    """Runs registered scripts for concurrent callers, a pipeline per batch."""

    def __init__(self, redis: Redis, *, max_batch: int = 256) -> None:
        self._redis = redis
        self._coalescer: Coalescer[_Call, Any] = Coalescer(self._send, max_batch=max_batch)
        self._round_trips = 0

    async def run(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's answer, as ``await script(keys=keys, args=args)`` would give it."""
        return await self._coalescer.submit(_Call(script, keys, args))

    @property
    def round_trips(self) -> int:
        """Pipelines and lone calls sent so far, NOSCRIPT resends included (for tests)."""
        return self._round_trips

    async def _send(self, calls: list[_Call]) -> list[Any]:
        if len(calls) == 1:
            call = calls[0]
            self._round_trips += 1
            return [await call.script(keys=call.keys, args=call.args)]
        outcomes = await self._pipeline(calls)
        forgotten = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, NoScriptError)]
        if forgotten:
            for script in {id(calls[i].script): calls[i].script for i in forgotten}.values():
                script.sha = await self._redis.script_load(script.script)
            again = await self._pipeline([calls[i] for i in forgotten])
            for i, outcome in zip(forgotten, again, strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        self._round_trips += 1
        return list(await pipe.execute(raise_on_error=False))

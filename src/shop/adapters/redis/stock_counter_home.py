"""The Redis home of the counter strategy: its whole state, as the switch, the sync, the
sweep and the operator see it.

The counters, the reservation records, the pending index and the buyers' tallies live in
Redis (``stock_keys``). This module reads and writes them as one ``StockState``: a staged
import that publishes nothing Redis lost midway, an export that aborts rather than hand over
a mix, and the per-store reads (``counters``, ``open_reservations``) and the sync to
PostgreSQL's mirror ``option.stock``. It is the counterpart of ``db.stock_state.PostgresHome``;
the hot path (``stock_counter``) never goes through it, and the rebuild after a loss
(``stock_counter_recovery``) only installs through its ``import_state``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.adapters.db.stock_fence import (
    COUNTER_GENERATION_SETTING,
    STRATEGY_SETTING,
    forget_setting,
    hold_fence,
    read_setting,
    write_setting,
)
from shop.adapters.db.stock_state import StateLost, StockState, set_db_stock
from shop.adapters.redis import stock_counter_scripts as lua
from shop.adapters.redis.stock_counter_records import (
    as_text,
    decode_record,
    encode_lines,
    encode_record,
    hgetall,
    smembers,
)
from shop.adapters.redis.stock_counter_recovery import CounterRecovery
from shop.adapters.redis.stock_keys import (
    ACTIVE,
    COUNTER,
    GENERATION,
    OPTIONS,
    PENDING,
    RECORDS,
    STAGING,
    SWITCHING,
    buyers_key,
    held_key,
    left_key,
    option_keys,
)
from shop.domain.stock.model import HeldReservation, ReservationStatus

_CHUNK = 500
# The name of this home's figure in ``shop stock status`` (see ``StockHome.figures``).
COUNTER_FIGURE = "redis counter"


class RedisCounterHome:
    """Where ``SHOP_STOCK_STRATEGY=counter`` keeps its state: Redis, fenced by a generation."""

    name = COUNTER

    def __init__(self, engine: AsyncEngine, redis: Redis, *, recovery_grace: float) -> None:
        self._engine = engine
        self._redis = redis
        self._retire = redis.register_script(lua.RETIRE)
        self._import_chunk = redis.register_script(lua.IMPORT_CHUNK)
        self._publish = redis.register_script(lua.PUBLISH)
        self.recovery = CounterRecovery(engine, redis, self, grace=recovery_grace)

    async def prepare(self) -> None:
        """Before the state moves out: make sure Redis holds all of it, every counter too."""
        await self.recovery.restore()
        ids = sorted(int(member) for member in await smembers(self._redis, OPTIONS))
        for option_id, left in (await self._counters(ids)).items():
            if left is None:
                await self.recovery.restore_counter(option_id)

    async def export_state(self, conn: AsyncConnection) -> StockState:
        """Read the whole state as it is while a switch holds it still.

        Runs with ``active = switching`` (no script sells) and the fence held exclusively
        (no restock, sync or rebuild), so nothing may change it but a loss. Each chunk is one
        MULTI/EXEC that also reads the generation and ``active``: a chunk read after a flush,
        an empty restart or a rebuild (a missing or different generation), or once ``active``
        no longer says ``switching``, aborts the export instead of handing over a mix.
        """
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(GENERATION)
        pipe.get(ACTIVE)
        pipe.smembers(OPTIONS)
        pipe.hgetall(RECORDS)
        generation, active, members, records = await pipe.execute()
        if generation is None:
            raise StateLost("Redis lost the stock counters before the switch could read them")
        _check_still(generation, generation, active)
        state = StockState(held=[decode_record(as_text(key), raw) for key, raw in records.items()])
        ids = sorted(int(member) for member in members)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(GENERATION)
            pipe.get(ACTIVE)
            pipe.mget([left_key(option_id) for option_id in chunk])
            for option_id in chunk:
                pipe.hgetall(buyers_key(option_id))
            seen, active, left, *buyers = await pipe.execute()
            _check_still(generation, seen, active)
            for option_id, value, tallies in zip(chunk, left, buyers, strict=True):
                if value is None:
                    raise StateLost(f"the Redis counter of option {option_id} is missing")
                state.remaining[option_id] = int(value)
                for buyer, units in tallies.items():
                    if int(units) > 0:
                        state.tallies[(option_id, as_text(buyer))] = int(units)
        return state

    async def import_state(self, conn: AsyncConnection, state: StockState) -> None:
        """Make Redis hold exactly ``state`` under a new generation, or raise ``StateLost``.

        Staged, so a loss midway is never published: a marker is set first, every chunk is a
        script that writes only while the marker is there, and the generation (which makes
        the scripts sell) is set by a last script only if the marker survived and the state
        has the size written. The generation is also recorded in PostgreSQL, in the caller's
        transaction, which ``intact`` compares with before and after the commit.
        """
        await self.clear()
        token = uuid.uuid4().hex
        generation = uuid.uuid4().hex
        await self._redis.set(STAGING, token)
        writes: list[tuple[str, str, str, Any]] = []
        for option_id, left in state.remaining.items():
            writes.append(("s", left_key(option_id), "", left))
            writes.append(("a", OPTIONS, str(option_id), ""))
        pending = 0
        for held in state.held:
            writes.append(("h", RECORDS, held.key, encode_record(held)))
            if held.status == ReservationStatus.PENDING:
                pending += 1
                writes.append(("z", PENDING, held.key, round(held.created_at * 1000)))
            for line in held.lines:
                writes.append(("h", held_key(line.option_id), held.key, line.quantity))
        for (option_id, buyer), units in state.tallies.items():
            writes.append(("h", buyers_key(option_id), buyer, units))
        for start in range(0, len(writes), _CHUNK):
            chunk = writes[start : start + _CHUNK]
            args: list[Any] = [token]
            for op, _, field, value in chunk:
                args.extend((op, field, value))
            if not await self._import_chunk(
                keys=[STAGING, *(key for _, key, _, _ in chunk)], args=args
            ):
                raise StateLost("Redis lost the stock state while it was being written")
        outcome = as_text(
            await self._publish(
                keys=[STAGING, GENERATION, OPTIONS, RECORDS, PENDING],
                args=[token, generation, len(state.remaining), len(state.held), pending],
            )
        )
        if outcome != "ok":
            raise StateLost(f"Redis lost the stock state while it was being written ({outcome})")
        await write_setting(conn, COUNTER_GENERATION_SETTING, generation)

    async def intact(self, conn: AsyncConnection) -> bool:
        """Redis still holds the generation PostgreSQL recorded (as ``conn`` sees it)."""
        recorded = await read_setting(conn, COUNTER_GENERATION_SETTING)
        return recorded is not None and await self._redis.get(GENERATION) == recorded.encode()

    async def vacate(self, conn: AsyncConnection) -> None:
        """The state now lives elsewhere: no counter generation is expected any more."""
        await forget_setting(conn, COUNTER_GENERATION_SETTING)

    async def after_vacate(self) -> None:
        await self.clear()

    async def clear(self) -> None:
        """Delete every stock key except ``active`` (the generation first)."""
        await self._redis.delete(GENERATION, STAGING)
        ids = [int(member) for member in await smembers(self._redis, OPTIONS)]
        keys = [key for option_id in ids for key in option_keys(option_id)]
        keys.extend((RECORDS, PENDING, OPTIONS))
        for start in range(0, len(keys), _CHUNK):
            await self._redis.delete(*keys[start : start + _CHUNK])

    async def open_reservations(self) -> list[HeldReservation]:
        records = await hgetall(self._redis, RECORDS)
        return [decode_record(as_text(key), raw) for key, raw in records.items()]

    async def retire(self, keys: Sequence[str]) -> None:
        for key in keys:
            raw = await cast("Awaitable[bytes | None]", self._redis.hget(RECORDS, key))
            if raw is None:
                continue
            held = decode_record(key, raw)
            await self._retire(
                keys=[
                    ACTIVE,
                    GENERATION,
                    RECORDS,
                    *(held_key(line.option_id) for line in held.lines),
                ],
                args=[key, encode_lines(held.lines)],
            )

    async def remaining(self, option_ids: Sequence[int]) -> dict[int, int | None]:
        """What this home sells from: the counters (``None`` where there is none)."""
        return await self._counters(option_ids)

    async def figures(self, option_ids: Sequence[int]) -> dict[int, dict[str, int | None]]:
        """The Redis counter of each option (``None`` where there is none)."""
        return {
            option_id: {COUNTER_FIGURE: left}
            for option_id, left in (await self._counters(option_ids)).items()
        }

    async def _counters(self, option_ids: Sequence[int]) -> dict[int, int | None]:
        ids = list(option_ids)
        if not ids:
            return {}
        values = await self._redis.mget([left_key(option_id) for option_id in ids])
        return {
            option_id: None if value is None else int(value)
            for option_id, value in zip(ids, values, strict=True)
        }

    async def sync(self) -> int:
        """Copy the counters to ``option.stock`` with the fence held exclusively.

        Not a blind copy: while the fence is held nothing else writes ``option.stock`` or a
        counter's PostgreSQL side (restocks and rebuilds take the same fence, and a switch
        cannot run), and a cancel in the counter strategy goes to the counter, so what is
        copied already includes it. The strategy is re-checked inside the fence, so a sync
        that lost a race with a switch writes nothing.
        """
        if await self._redis.get(ACTIVE) != COUNTER.encode():
            return 0
        async with self._engine.begin() as conn:
            await hold_fence(conn)
            if await read_setting(conn, STRATEGY_SETTING) != COUNTER:
                return 0
            ids = sorted(int(member) for member in await smembers(self._redis, OPTIONS))
            counters = await self._counters(ids)
            return await set_db_stock(
                conn, {option_id: left for option_id, left in counters.items() if left is not None}
            )


def _check_still(generation: bytes, seen: bytes | None, active: bytes | None) -> None:
    """The state an export reads is still the one it started on, held by a switch."""
    if seen != generation:
        raise StateLost("Redis lost the stock counters while the switch was reading them")
    if active != SWITCHING.encode():
        raise StateLost("Redis no longer marks the switch (active is not 'switching')")

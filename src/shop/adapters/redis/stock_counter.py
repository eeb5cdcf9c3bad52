"""The ``counter`` stock strategy: what is left lives in Redis, one Lua script decides.

``reserve`` is one EVALSHA: the script checks every line (and the buyer's limit), then
decrements every line, records the reservation under its key and indexes it as pending — all
or nothing, atomically, so the hot path is a single round trip and a counter never goes
negative. ``confirm`` and ``release`` are scripts too, idempotent per key: a released key's
record is gone, so a second release finds nothing to give back. The purchase path's two
scripts (``reserve``, ``confirm``) of concurrent purchases share their round trips: they go
through one ``ScriptBatches`` per process, a pipeline per batch, each script still atomic
and answered alone (``script_batches``). ``release`` (a failed order, a cancel, the sweep)
goes alone.

PostgreSQL stays the ledger (``stock_total`` and the lines of live orders). The sync job
copies the counters to ``option.stock`` (the home's ``sync``), so the database is at most one
interval behind; ``put_on_sale`` raises ``stock_total`` in PostgreSQL first, then the counter.

Recovery (``stock_counter_recovery``): if Redis loses the state, every script answers
``nogen`` and a caller waits (up to ``SHOP_STOCK_WAIT``, then ``Unavailable``) while one
process rebuilds it from the ledger; a single missing counter answers ``missing`` and is
rebuilt alone. The state as a whole (export/import for the switch, the sync, the sweep's
reads) is the home's (``stock_counter_home``); the record format is ``stock_counter_records``.

Redis Cluster. Per-option keys carry the hash tag ``{o<id>}``; the reservation records and
control keys share ``{stock}``. A reservation's script therefore touches the ``{stock}`` slot
and one slot per option. Standalone Redis and Sentinel (what the shop runs and tests) execute
it atomically. On a Cluster it would be refused (CROSSSLOT): we chose an atomic multi-option
reservation over sharding, because one hot option lives in one slot whatever the layout
(a counter cannot be split), a single Redis runs far more scripts per second than the app
tier can send, and the alternative — per-option scripts with compensation — brings back the
transient wrong counts of a line-by-line rollback. The per-option tags keep the
move to per-option scripts mechanical should sharding ever be needed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.adapters.db.stock_fence import (
    COUNTER_GENERATION_SETTING,
    STRATEGY_SETTING,
    StrategyMoved,
    fence_across_commits,
    read_setting,
)
from shop.adapters.db.stock_restock import RestockRecord, record_restock
from shop.adapters.db.stock_rows import add_to_total, db_stock
from shop.adapters.redis import stock_counter_scripts as lua
from shop.adapters.redis.script_batches import ScriptBatches
from shop.adapters.redis.stock_counter_home import RedisCounterHome
from shop.adapters.redis.stock_counter_records import as_text, decode_record, encode_lines
from shop.adapters.redis.stock_keys import (
    ACTIVE,
    COUNTER,
    GENERATION,
    PENDING,
    RECORDS,
    left_key,
    option_keys,
    restocks_key,
)
from shop.domain.errors import PurchaseLimitExceeded, ReservationLost, SoldOut
from shop.domain.stock.model import Line, PerBuyerLimit, Reservation, limit_for, merge_lines
from shop.domain.stock.preconditions import check_limit_arguments, check_units
from shop.logs import get_logger

_log = get_logger("shop.stock.counter")


class RedisCounterStock:
    """``SHOP_STOCK_STRATEGY=counter``: Lua scripts over per-option counters in Redis."""

    name = COUNTER

    def __init__(
        self,
        engine: AsyncEngine,
        redis: Redis,
        *,
        wait: float = 2.0,
        recovery_grace: float = 10.0,
    ) -> None:
        self._engine = engine
        self._redis = redis
        self.home = RedisCounterHome(engine, redis, recovery_grace=recovery_grace)
        self._recovery = self.home.recovery
        self._wait = wait
        self.batches = ScriptBatches(redis)
        self._reserve = redis.register_script(lua.RESERVE)
        self._confirm = redis.register_script(lua.CONFIRM)
        self._release = redis.register_script(lua.RELEASE)
        self._restock = redis.register_script(lua.RESTOCK)

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        check_limit_arguments(buyer, per_buyer_limit)
        merged = merge_lines(lines)
        keys = [ACTIVE, GENERATION, RECORDS, PENDING]
        args: list[Any] = [key, buyer or "", encode_lines(merged)]
        for line in merged:
            keys.extend(option_keys(line.option_id))
            args.extend(
                (line.option_id, line.quantity, limit_for(per_buyer_limit, line.option_id) or 0)
            )
        deadline = time.monotonic() + self._wait
        while True:
            outcome = await self.batches.run(self._reserve, keys, args)
            kind = as_text(outcome[0])
            if kind == "ok":
                return Reservation(key=key, lines=merged, generation=as_text(outcome[1]))
            if kind == "exists":
                return Reservation(
                    key=key,
                    lines=decode_record(key, outcome[1]).lines,
                    generation=as_text(outcome[2]),
                )
            if kind == "soldout":
                option_id = int(outcome[1])
                raise SoldOut(option_id, requested=_quantity(merged, option_id))
            if kind == "limit":
                raise PurchaseLimitExceeded(int(outcome[1]), int(outcome[2]))
            await self._recovery.recover(kind, outcome, deadline)

    async def confirm(self, key: str) -> None:
        deadline = time.monotonic() + self._wait
        while True:
            outcome = await self.batches.run(
                self._confirm, [ACTIVE, GENERATION, RECORDS, PENDING], [key]
            )
            kind = as_text(outcome[0])
            if kind == "ok":
                return
            if kind == "unknown":
                # Released (swept as abandoned) or never made: the order just written holds
                # no units, and confirming it would sell what is no longer set aside.
                raise ReservationLost(key)
            await self._recovery.recover(kind, outcome, deadline)

    async def release(self, key: str) -> None:
        deadline = time.monotonic() + self._wait
        while True:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(ACTIVE)
            pipe.exists(GENERATION)
            pipe.hget(RECORDS, key)
            active, generation, raw = await pipe.execute()
            if active != COUNTER.encode():
                raise StrategyMoved("stock strategy is no longer counter")
            if not generation:
                await self._recovery.recover("nogen", [], deadline)
                continue
            if raw is None:
                return
            held = decode_record(key, raw)
            keys = [ACTIVE, GENERATION, RECORDS, PENDING]
            args: list[Any] = [key, encode_lines(held.lines)]
            for line in held.lines:
                keys.extend(option_keys(line.option_id))
                args.extend((line.option_id, line.quantity))
            outcome = await self._release(keys=keys, args=args)
            kind = as_text(outcome[0])
            if kind in ("ok", "unknown"):
                return
            if kind != "changed":
                await self._recovery.recover(kind, outcome, deadline)

    async def put_on_sale(self, option_id: int, units: int, *, key: str | None = None) -> None:
        """Raise ``stock_total`` in PostgreSQL, then the counter, with the fence held across
        both: a switch or sync never sees one without the other. If the process dies in
        between, the counter is short (never long) until recovery or ``reconcile --fix``.

        With ``key``, the ledger records it with the increase, together with the counter
        generation of the moment; a retry that finds it there adds nothing to the ledger and
        still runs the Redis step, which applies the units once per key and only under
        that generation. So a retry after a failure between the two steps completes the
        counter, and a retry after a rebuild (which read the units from the ledger) adds
        nothing. A switch to another strategy in between carries the short counter along:
        the units then show as drift in ``shop stock status`` until ``reconcile --fix``."""
        check_units(units)
        earlier: RestockRecord | None = None
        generation = ""
        async with self._engine.connect() as conn, fence_across_commits(conn):
            async with conn.begin():
                if await read_setting(conn, STRATEGY_SETTING) != self.name:
                    raise StrategyMoved("stock strategy is no longer counter")
                if key is not None:
                    generation = await read_setting(conn, COUNTER_GENERATION_SETTING) or ""
                    earlier = await record_restock(
                        conn, key, option_id, units, counter_generation=generation
                    )
                if earlier is None:
                    await add_to_total(conn, option_id, units)
                else:
                    generation = earlier.counter_generation or ""
            outcome = as_text(
                await self._restock(
                    keys=[GENERATION, left_key(option_id), restocks_key(option_id)],
                    args=[units, key or "", generation],
                )
            )
            if outcome == "missing":
                await self._recovery.install_counter(option_id)
            elif outcome == "stale" and earlier is None:
                _log.error(
                    "counter generation differs from PostgreSQL's; restocked units wait "
                    "for reconcile --fix",
                    option_id=option_id,
                    units=units,
                )

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        ids = list(option_ids)
        if not ids:
            return {}
        values = await self._redis.mget([left_key(option_id) for option_id in ids])
        found = {
            option_id: int(value) for option_id, value in zip(ids, values, strict=True) if value
        }
        missing = [option_id for option_id in ids if option_id not in found]
        if missing:
            async with self._engine.connect() as conn:
                found.update(await db_stock(conn, missing))
        return {option_id: found[option_id] for option_id in ids}

    async def close(self) -> None:
        """Stop a rebuild still running (its lock expires; another process takes over)."""
        await self._recovery.close()


def _quantity(lines: Sequence[Line], option_id: int) -> int:
    return sum(line.quantity for line in lines if line.option_id == option_id)

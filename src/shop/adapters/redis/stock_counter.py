"""The ``counter`` stock strategy: what is left lives in Redis, one Lua script decides.

``reserve`` is one EVALSHA: the script checks every line (and the buyer's limit), then
decrements every line, records the reservation under its key and indexes it as pending — all
or nothing, atomically, so the hot path is a single round trip and a counter never goes
negative. ``confirm`` and ``release`` are scripts too, idempotent per key: a released key's
record is gone, so a second release finds nothing to give back.

PostgreSQL stays the ledger (``stock_total`` and the lines of live orders). The sync job
copies the counters to ``option.stock`` (``sync``), so the database is at most one interval
behind; ``put_on_sale`` raises ``stock_total`` in PostgreSQL first, then the counter.

Recovery. If Redis loses its data (an empty restart, a FLUSHDB), the generation key is gone
and every script answers ``nogen``. One process (Redis ``SET NX`` lock, then the PostgreSQL
fence held exclusively) rebuilds the whole state from the ledger: counters =
``stock_total - live order lines``, and the reservations of orders that may still be
cancelled (so a later release finds them). Reservations made before the loss whose order
is still being written are unknowable after it, so when a counter generation existed the
rebuild first waits ``SHOP_STOCK_RECOVERY_GRACE`` seconds for those orders to land; it then
reads the ledger in one snapshot. Buyers wait (then get ``Unavailable``) meanwhile: a refused
sale can be retried, an oversold one cannot. A single counter key that is missing while the
generation exists (a new option, a manual DEL) is rebuilt alone: ``stock_total`` − the units
the option's remaining reservations hold − live order lines outside them. The install is a
``SET NX``, so two rebuilders can never add up. A full rebuild installs through the staged
``import_state`` (a loss midway publishes nothing; the rebuild runs again) and records what
it changed against PostgreSQL's mirror ``option.stock`` (``stock_rebuilds``).

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

import asyncio
import contextlib
import datetime
import time
import uuid
import weakref
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop.adapters.db.reservation_claims import mark_generation_lost, void_moved_reservations
from shop.adapters.db.stock_fence import (
    COUNTER_GENERATION_SETTING,
    STRATEGY_SETTING,
    StrategyMoved,
    fence_across_commits,
    forget_setting,
    hold_fence,
    read_setting,
    write_setting,
)
from shop.adapters.db.stock_ledger import (
    buyer_units,
    ledger_snapshot,
    option_ledger,
    releasable_orders,
    sold_outside,
)
from shop.adapters.db.stock_rebuilds import record_rebuild
from shop.adapters.db.stock_restock import RestockRecord, record_restock
from shop.adapters.db.stock_rows import add_to_total, check_limit_arguments, check_units, db_stock
from shop.adapters.db.stock_state import StateLost, StockState, set_db_stock
from shop.adapters.redis import stock_counter_scripts as lua
from shop.adapters.redis.stock_keys import (
    ACTIVE,
    GENERATION,
    OPTIONS,
    PENDING,
    REBUILD_LOCK,
    RECORDS,
    STAGING,
    SWITCHING,
    buyers_key,
    held_key,
    left_key,
    option_keys,
    restocks_key,
)
from shop.domain.errors import (
    PurchaseLimitExceeded,
    ReservationLost,
    SoldOut,
    Unavailable,
)
from shop.domain.stock.model import (
    HeldReservation,
    Line,
    RebuiltOption,
    Reservation,
    StockRebuild,
    merge_lines,
)
from shop.logs import get_logger

_log = get_logger("shop.stock.counter")
_POLL = 0.02
_CHUNK = 500


def encode_lines(lines: Sequence[Line]) -> str:
    return ",".join(f"{line.option_id}:{line.quantity}" for line in lines)


def decode_lines(raw: str) -> tuple[Line, ...]:
    pairs = (part.split(":") for part in raw.split(",") if part)
    return merge_lines(Line(int(option_id), int(quantity)) for option_id, quantity in pairs)


def encode_record(held: HeldReservation) -> str:
    status = "p" if held.status == "pending" else "c"
    created_ms = round(held.created_at * 1000)
    return f"{status}|{created_ms}|{encode_lines(held.lines)}|{held.buyer or ''}"


def decode_record(key: str, raw: bytes | str) -> HeldReservation:
    text = raw.decode() if isinstance(raw, bytes) else raw
    status, created_ms, lines, buyer = text.split("|", 3)
    return HeldReservation(
        key=key,
        lines=decode_lines(lines),
        status="pending" if status == "p" else "confirmed",
        buyer=buyer or None,
        created_at=int(created_ms) / 1000,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisCounterStock:
    """``SHOP_STOCK_STRATEGY=counter``: Lua scripts over per-option counters in Redis."""

    name = "counter"

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
        self.home = self
        self._wait = wait
        self._grace = recovery_grace
        self._reserve = redis.register_script(lua.RESERVE)
        self._confirm = redis.register_script(lua.CONFIRM)
        self._release = redis.register_script(lua.RELEASE)
        self._retire = redis.register_script(lua.RETIRE)
        self._restock = redis.register_script(lua.RESTOCK)
        self._install = redis.register_script(lua.INSTALL)
        self._import_chunk = redis.register_script(lua.IMPORT_CHUNK)
        self._publish = redis.register_script(lua.PUBLISH)
        self._restoring = asyncio.Lock()
        self._rebuild: asyncio.Task[None] | None = None
        self._rebuilding: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # -- the port -------------------------------------------------------------------------

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: int | None = None,
    ) -> Reservation:
        check_limit_arguments(buyer, per_buyer_limit)
        merged = merge_lines(lines)
        keys = [ACTIVE, GENERATION, RECORDS, PENDING]
        args: list[Any] = [key, buyer or "", per_buyer_limit or 0, encode_lines(merged)]
        for line in merged:
            keys.extend(option_keys(line.option_id))
            args.extend((line.option_id, line.quantity))
        deadline = time.monotonic() + self._wait
        while True:
            outcome = await self._reserve(keys=keys, args=args)
            kind = _text(outcome[0])
            if kind == "ok":
                return Reservation(key=key, lines=merged, generation=_text(outcome[1]))
            if kind == "exists":
                return Reservation(
                    key=key,
                    lines=decode_record(key, outcome[1]).lines,
                    generation=_text(outcome[2]),
                )
            if kind == "soldout":
                option_id = int(outcome[1])
                raise SoldOut(option_id, requested=_quantity(merged, option_id))
            if kind == "limit":
                raise PurchaseLimitExceeded(int(outcome[1]), per_buyer_limit or 0)
            await self._recover(kind, outcome, deadline)

    async def confirm(self, key: str) -> None:
        deadline = time.monotonic() + self._wait
        while True:
            outcome = await self._confirm(keys=[ACTIVE, GENERATION, RECORDS, PENDING], args=[key])
            kind = _text(outcome[0])
            if kind == "ok":
                return
            if kind == "unknown":
                # Released (swept as abandoned) or never made: the order just written holds
                # no units, and confirming it would sell what is no longer set aside.
                raise ReservationLost(key)
            await self._recover(kind, outcome, deadline)

    async def release(self, key: str) -> None:
        deadline = time.monotonic() + self._wait
        while True:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(ACTIVE)
            pipe.exists(GENERATION)
            pipe.hget(RECORDS, key)
            active, generation, raw = await pipe.execute()
            if active != b"counter":
                raise StrategyMoved("stock strategy is no longer counter")
            if not generation:
                await self._recover("nogen", [], deadline)
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
            kind = _text(outcome[0])
            if kind in ("ok", "unknown"):
                return
            if kind != "changed":
                await self._recover(kind, outcome, deadline)

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
            outcome = _text(
                await self._restock(
                    keys=[GENERATION, left_key(option_id), restocks_key(option_id)],
                    args=[units, key or "", generation],
                )
            )
            if outcome == "missing":
                await self._install_counter(option_id)
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

    # -- recovery -------------------------------------------------------------------------

    async def _recover(self, kind: str, outcome: Sequence[Any], deadline: float) -> None:
        if kind == "moved":
            raise StrategyMoved("stock strategy is no longer counter")
        if time.monotonic() > deadline:
            raise Unavailable("stock is being recovered; please retry shortly")
        if kind == "nogen":
            await self.restore(deadline)
        elif kind == "missing":
            await self._restore_counter(int(outcome[1]))
        else:
            raise RuntimeError(f"unexpected answer from a stock script: {kind!r}")

    async def restore(self, deadline: float | None = None) -> None:
        """Make sure Redis holds the whole counter state, rebuilding it if it was lost.

        The rebuild runs as a task of its own (it may wait out the grace period); callers
        wait for it until their deadline, then get ``Unavailable``. One task per process
        watches; the others queue behind it instead of polling Redis too.
        """
        give_up = deadline if deadline is not None else time.monotonic() + self._grace + 60
        try:
            async with asyncio.timeout(max(give_up - time.monotonic(), 0)):
                await self._restoring.acquire()
        except TimeoutError:
            raise Unavailable("stock is being recovered; please retry shortly") from None
        try:
            while not await self._redis.exists(GENERATION):
                task = self._rebuild
                if task is not None and task.done():
                    self._rebuild = None
                    failure = None if task.cancelled() else task.exception()
                    if isinstance(failure, StateLost):
                        # Redis lost the rebuild's own writes: nothing was published, and
                        # the next turn of the loop rebuilds again.
                        _log.warning("counter rebuild lost to Redis; rebuilding again")
                    elif failure is not None:
                        raise failure
                    continue
                if task is None:
                    token = uuid.uuid4().hex
                    if await self._redis.set(
                        REBUILD_LOCK, token, nx=True, px=int((self._grace + 30) * 1000)
                    ):
                        task = self._rebuild = asyncio.create_task(self._rebuild_holding(token))
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    raise Unavailable("stock is being recovered; please retry shortly")
                if task is not None:
                    await asyncio.wait([task], timeout=remaining)
                else:
                    await asyncio.sleep(min(_POLL, remaining))
        finally:
            self._restoring.release()

    async def close(self) -> None:
        """Stop a rebuild still running (its lock expires; another process takes over)."""
        if self._rebuild is not None and not self._rebuild.done():
            self._rebuild.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebuild

    async def _rebuild_holding(self, token: str) -> None:
        try:
            await self._rebuild_all()
        finally:
            if await self._redis.get(REBUILD_LOCK) == token.encode():
                await self._redis.delete(REBUILD_LOCK)

    async def _rebuild_all(self) -> None:
        """Rebuild the whole state from the ledger after Redis lost it.

        Orders whose reservation came from the lost state are fenced by its generation (see
        ``Reservation.generation``): the lost generation is recorded with the fence held
        exclusively, so each such order insert either committed before the ledger is read
        (and is counted as sold) or is refused afterwards (its units were counted unsold).
        The grace period, spent before taking the fence, only lets in-flight purchases land
        instead of being refused; correctness does not depend on it.
        """
        async with self._engine.connect() as conn:
            lost = await read_setting(conn, COUNTER_GENERATION_SETTING)
        if lost is not None and self._grace > 0 and not await self._redis.exists(GENERATION):
            _log.warning("counter state lost; waiting for in-flight orders", grace=self._grace)
            await asyncio.sleep(self._grace)
        async with self._engine.connect() as conn, fence_across_commits(conn):
            async with conn.begin():
                if await read_setting(conn, STRATEGY_SETTING) != self.name:
                    raise StrategyMoved("stock strategy is no longer counter")
                if await self._redis.exists(GENERATION):
                    return
                previous = await read_setting(conn, COUNTER_GENERATION_SETTING)
                if previous is not None:
                    await mark_generation_lost(conn, previous)
                    await void_moved_reservations(conn)
            async with ledger_snapshot(self._engine) as view:
                entries = await option_ledger(view)
                state = StockState(
                    remaining={
                        option_id: max(entry.unsold, 0) for option_id, entry in entries.items()
                    },
                    held=await releasable_orders(view),
                    tallies=await buyer_units(view),
                )
            overdrawn = [option_id for option_id, e in entries.items() if e.unsold < 0]
            if overdrawn:
                _log.error("ledger shows more sold than put on sale", options=overdrawn)
            # The counters are gone; what PostgreSQL's mirror said is the best "before" left.
            rebuild = StockRebuild(
                at=datetime.datetime.now(datetime.UTC),
                strategy=self.name,
                cause=(
                    "Redis lost the counter state"
                    if previous is not None
                    else "no counter state in Redis yet"
                ),
                source="option.stock (PostgreSQL's mirror, up to one sync interval behind)",
                options=len(entries),
                changed=tuple(
                    RebuiltOption(option_id, before=entry.stock, after=state.remaining[option_id])
                    for option_id, entry in entries.items()
                    if entry.stock != state.remaining[option_id]
                ),
            )
            async with conn.begin():
                await self.import_state(conn, state)
                await record_rebuild(conn, rebuild)
            _log.warning(
                "counter state rebuilt from PostgreSQL",
                options=len(state.remaining),
                changed=len(rebuild.changed),
            )

    async def _restore_counter(self, option_id: int) -> None:
        lock = self._rebuilding.setdefault(option_id, asyncio.Lock())
        async with lock:
            if await self._redis.exists(left_key(option_id)):
                return
            async with self._engine.connect() as conn, fence_across_commits(conn):
                async with conn.begin():
                    if await read_setting(conn, STRATEGY_SETTING) != self.name:
                        raise StrategyMoved("stock strategy is no longer counter")
                await self._install_counter(option_id)

    async def _install_counter(self, option_id: int) -> None:
        """Rebuild one counter; the caller holds the fence exclusively. An option that does
        not exist has nothing to sell: ``SoldOut``, as the other strategies say."""
        if not await self._redis.exists(GENERATION):
            return
        held = {
            _text(key): int(units)
            for key, units in (await _hgetall(self._redis, held_key(option_id))).items()
        }
        async with ledger_snapshot(self._engine) as view:
            entry = (await option_ledger(view, [option_id])).get(option_id)
            if entry is None:
                raise SoldOut(option_id)
            outside = await sold_outside(view, option_id, sorted(held))
        left = entry.stock_total - sum(held.values()) - outside
        if left < 0:
            _log.error("ledger shows more sold than put on sale", option_id=option_id, left=left)
            left = 0
        await self._install(keys=[GENERATION, left_key(option_id), OPTIONS], args=[left, option_id])

    # -- state, for the switch, the sync, the sweep and the operator ------------------------

    async def prepare(self) -> None:
        """Before the state moves out: make sure Redis holds all of it, every counter too."""
        await self.restore()
        ids = sorted(int(member) for member in await _smembers(self._redis, OPTIONS))
        for option_id, left in (await self.counters(ids)).items():
            if left is None:
                await self._restore_counter(option_id)

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
        state = StockState(held=[decode_record(_text(key), raw) for key, raw in records.items()])
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
                        state.tallies[(option_id, _text(buyer))] = int(units)
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
            if held.status == "pending":
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
        outcome = _text(
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
        ids = [int(member) for member in await _smembers(self._redis, OPTIONS)]
        keys = [key for option_id in ids for key in option_keys(option_id)]
        keys.extend((RECORDS, PENDING, OPTIONS))
        for start in range(0, len(keys), _CHUNK):
            await self._redis.delete(*keys[start : start + _CHUNK])

    async def open_reservations(self) -> list[HeldReservation]:
        records = await _hgetall(self._redis, RECORDS)
        return [decode_record(_text(key), raw) for key, raw in records.items()]

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
        return await self.counters(option_ids)

    async def counters(self, option_ids: Sequence[int]) -> dict[int, int | None]:
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
        if await self._redis.get(ACTIVE) != b"counter":
            return 0
        async with self._engine.begin() as conn:
            await hold_fence(conn)
            if await read_setting(conn, STRATEGY_SETTING) != self.name:
                return 0
            ids = sorted(int(member) for member in await _smembers(self._redis, OPTIONS))
            counters = await self.counters(ids)
            return await set_db_stock(
                conn, {option_id: left for option_id, left in counters.items() if left is not None}
            )


async def _smembers(redis: Redis, key: str) -> set[bytes]:
    return await cast("Awaitable[set[bytes]]", redis.smembers(key))


async def _hgetall(redis: Redis, key: str) -> dict[bytes, bytes]:
    return await cast("Awaitable[dict[bytes, bytes]]", redis.hgetall(key))


def _check_still(generation: bytes, seen: bytes | None, active: bytes | None) -> None:
    """The state an export reads is still the one it started on, held by a switch."""
    if seen != generation:
        raise StateLost("Redis lost the stock counters while the switch was reading them")
    if active != SWITCHING.encode():
        raise StateLost("Redis no longer marks the switch (active is not 'switching')")


def _quantity(lines: Sequence[Line], option_id: int) -> int:
    return sum(line.quantity for line in lines if line.option_id == option_id)

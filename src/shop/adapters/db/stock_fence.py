"""The switch fence in PostgreSQL: which strategy sells, and who may touch stock state now.

``app_setting['stock_strategy']`` is the durable truth of the active strategy. One advisory
lock orders everything that moves stock state between stores:

- every operation of a PostgreSQL-backed strategy holds it *shared* for its transaction and
  checks, after taking it, that its strategy is still the active one (``StrategyMoved``
  otherwise, and nothing was written);
- a switch, a counter rebuild, the counter sync and a counter restock hold it *exclusive*.

So an operation of the old strategy either commits before the switch reads the state, or
starts after the switch committed and finds itself moved. Advisory locks live in the lock
manager: taking one shared writes no row, which matters on the hot path. The SQL function
``shop_stock_fence(lock, strategy)`` (migration 0003_stock) takes the lock and then checks
the strategy in a snapshot of its own, so the hot statements fold the whole fence into their
first write: ``... WHERE shop_stock_fence(:lock, :strategy)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shop.adapters.db.tables import AppSettingRow

STRATEGY_SETTING = "stock_strategy"
# Present while Redis is expected to hold counter state (the counter strategy served since).
COUNTER_GENERATION_SETTING = "stock_counter_generation"

FENCE_LOCK = 0x73_68_6F_70_73_74_6B  # "shopstk": one key for the whole stock state

# Usable inside any statement; true iff the strategy named is the active one, lock held.
FENCE_SQL = f"shop_stock_fence({FENCE_LOCK}, :strategy)"


def fence_sql(strategy_param: str) -> str:
    """``FENCE_SQL`` with the strategy as a positional parameter (``$1``…), for statements run
    on the asyncpg driver directly."""
    return f"shop_stock_fence({FENCE_LOCK}, {strategy_param}::text)"


_SHARED = text(f"SELECT {FENCE_SQL}")
_EXCLUSIVE = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=FENCE_LOCK)
_TRY_SHARED = text("SELECT pg_try_advisory_xact_lock_shared(:key)").bindparams(key=FENCE_LOCK)
_SESSION_LOCK = text("SELECT pg_advisory_lock(:key)").bindparams(key=FENCE_LOCK)
_SESSION_UNLOCK = text("SELECT pg_advisory_unlock(:key)").bindparams(key=FENCE_LOCK)


class StrategyMoved(Exception):
    """The strategy an adapter implements is no longer the active one: ask again which is.

    Raised before anything was written, so the caller may simply retry with the new one.
    """


async def read_setting(conn: AsyncConnection, name: str) -> str | None:
    value = (
        await conn.execute(select(AppSettingRow.value).where(AppSettingRow.name == name))
    ).scalar_one_or_none()
    return None if value is None else str(value)


async def write_setting(conn: AsyncConnection, name: str, value: str) -> None:
    statement = insert(AppSettingRow).values(name=name, value=value)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=[AppSettingRow.name],
            set_={"value": statement.excluded.value, "updated_at": text("now()")},
        )
    )


async def forget_setting(conn: AsyncConnection, name: str) -> None:
    await conn.execute(delete(AppSettingRow).where(AppSettingRow.name == name))


async def stored_strategy(conn: AsyncConnection, *, default: str) -> str:
    """The active strategy; a fresh deployment stores ``default`` (SHOP_STOCK_STRATEGY) first."""
    await conn.execute(
        insert(AppSettingRow)
        .values(name=STRATEGY_SETTING, value=default)
        .on_conflict_do_nothing(index_elements=[AppSettingRow.name])
    )
    return await read_setting(conn, STRATEGY_SETTING) or default


async def share_fence(conn: AsyncConnection, strategy: str) -> None:
    """Hold the fence shared for this transaction and make sure ``strategy`` still sells."""
    if not (await conn.execute(_SHARED, {"strategy": strategy})).scalar():
        active = await read_setting(conn, STRATEGY_SETTING)
        raise StrategyMoved(f"stock strategy is {active!r}, not {strategy!r}")


async def fence_is_quiet(conn: AsyncConnection) -> bool:
    """Take the fence shared for this transaction if nobody holds or awaits it exclusively.

    ``False`` means a switch, repair, rebuild, restock or sync of the counter is moving stock
    state right now (PostgreSQL's word, which a Redis loss cannot erase). ``True``: none is,
    and none can start before this transaction ends.
    """
    return bool((await conn.execute(_TRY_SHARED)).scalar())


async def hold_fence(conn: AsyncConnection) -> None:
    """Hold the fence exclusively until this transaction ends."""
    await conn.execute(_EXCLUSIVE)


@asynccontextmanager
async def fence_across_commits(conn: AsyncConnection) -> AsyncIterator[None]:
    """Hold the fence exclusively across several transactions and a Redis step after a commit.

    A session-level lock survives commits; it is released here, or with the connection if
    this process dies. If releasing fails, the connection is thrown away rather than returned
    to the pool still holding the lock.
    """
    await conn.execute(_SESSION_LOCK)
    await conn.commit()
    try:
        yield
    finally:
        try:
            if conn.in_transaction():
                await conn.rollback()
            await conn.execute(_SESSION_UNLOCK)
            await conn.commit()
        except BaseException:
            await conn.invalidate()
            raise

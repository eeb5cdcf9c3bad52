"""Group commit of the PostgreSQL strategies' confirmations on the real PostgreSQL: concurrent
confirms of one process go as one statement, and each caller gets the answer its own
statement would have given (confirmed, already confirmed, lost, strategy moved)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import text

from shop.adapters.db import stock as stock_module
from shop.adapters.db.stock import PostgresStock
from shop.adapters.db.stock_fence import STRATEGY_SETTING, StrategyMoved
from shop.adapters.db.stock_rows import Raw, confirm_all_in, confirm_in
from shop.bootstrap import Container
from shop.domain.errors import ReservationLost
from shop.domain.stock.model import Line
from tests.factories import make_option


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """The confirm statements the adapter sends: ``("all", keys)`` for a batch statement,
    ``("one", key)`` for the single confirmation."""
    sent: list[tuple[str, object]] = []

    async def all_in(raw: Raw, keys: Sequence[str], *, strategy: str) -> set[str]:
        sent.append(("all", sorted(keys)))
        return await confirm_all_in(raw, keys, strategy=strategy)

    async def one_in(raw: Raw, key: str, *, strategy: str) -> None:
        sent.append(("one", key))
        await confirm_in(raw, key, strategy=strategy)

    monkeypatch.setattr(stock_module, "confirm_all_in", all_in)
    monkeypatch.setattr(stock_module, "confirm_in", one_in)
    return sent


async def statuses(container: Container, keys: Sequence[str]) -> dict[str, str]:
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT key, status FROM stock_reservation WHERE key = ANY(:keys)"),
            {"keys": list(keys)},
        )
        return {row.key: row.status for row in rows}


async def test_a_batch_with_mixed_outcomes_is_one_statement_and_fallbacks(
    clean: Container, counted: list[tuple[str, object]]
) -> None:
    await clean.stock_operations.use("db")
    stock = PostgresStock(clean.engine)
    option_id = await make_option(clean, stock=10)
    for key in ("p1", "p2", "done", "late", "moved"):
        await stock.reserve([Line(option_id, 1)], key=key)
    await stock.confirm("done")
    await stock.release("late")
    async with clean.engine.begin() as conn:  # as a switch to the counter leaves it
        await conn.execute(
            text("UPDATE stock_reservation SET status = 'moved' WHERE key = :k"), {"k": "moved"}
        )
    counted.clear()

    keys = ["p1", "p2", "done", "late", "nobody", "moved", "p1"]
    outcomes = await asyncio.gather(*(stock.confirm(key) for key in keys), return_exceptions=True)

    assert outcomes[:3] == [None, None, None]
    assert [type(outcome) for outcome in outcomes[3:6]] == [ReservationLost] * 3
    assert outcomes[6] is None  # the same key twice in one batch: both callers confirmed
    # One statement for the batch; only the keys it did not confirm went again on their own.
    assert counted == [
        ("all", sorted(keys)),
        ("one", "done"),
        ("one", "late"),
        ("one", "nobody"),
        ("one", "moved"),
    ]
    assert await statuses(clean, keys) == {
        "p1": "confirmed",
        "p2": "confirmed",
        "done": "confirmed",
        "late": "released",
        "moved": "moved",
    }
    assert (await stock.available([option_id]))[option_id] == 6  # the release gave one back


async def test_a_batch_of_a_strategy_no_longer_active_is_refused_to_each_caller(
    clean: Container, counted: list[tuple[str, object]]
) -> None:
    await clean.stock_operations.use("db")
    stock = PostgresStock(clean.engine)
    option_id = await make_option(clean, stock=5)
    keys = [f"k{i}" for i in range(3)]
    for key in keys:
        await stock.reserve([Line(option_id, 1)], key=key)
    await clean.stock_operations.use("counter")
    counted.clear()

    outcomes = await asyncio.gather(*(stock.confirm(key) for key in keys), return_exceptions=True)

    assert [type(outcome) for outcome in outcomes] == [StrategyMoved] * 3
    assert counted == [("all", keys)]  # the active strategy read once for them all
    assert set((await statuses(clean, keys)).values()) == {"moved"}  # confirmed by nobody


async def test_a_lone_confirm_keeps_its_single_statement(
    clean: Container, counted: list[tuple[str, object]]
) -> None:
    await clean.stock_operations.use("db")
    stock = PostgresStock(clean.engine)
    option_id = await make_option(clean, stock=1)
    await stock.reserve([Line(option_id, 1)], key="alone")
    counted.clear()
    await stock.confirm("alone")
    await stock.confirm("alone")  # idempotent
    with pytest.raises(ReservationLost):
        await stock.confirm("nobody")
    assert counted == [("one", "alone"), ("one", "alone"), ("one", "nobody")]
    assert await statuses(clean, ["alone"]) == {"alone": "confirmed"}


async def test_concurrent_confirms_go_as_fewer_statements(
    clean: Container, counted: list[tuple[str, object]]
) -> None:
    await clean.stock_operations.use("db")
    stock = PostgresStock(clean.engine, max_batch=8)
    option_id = await make_option(clean, stock=40)
    keys = [f"c{i}" for i in range(40)]
    for key in keys:
        await stock.reserve([Line(option_id, 1)], key=key)
    counted.clear()

    assert await asyncio.gather(*(stock.confirm(key) for key in keys)) == [None] * 40

    assert all(kind == "all" for kind, _ in counted)  # every key confirmed by its batch
    assert len(counted) == 5  # batches of at most 8
    assert set((await statuses(clean, keys)).values()) == {"confirmed"}


class SwitchBackAfterFirstStatement:
    """A real asyncpg connection on which the active strategy moves back to ``db`` right after
    the first statement ran: the fence refused that statement, the reads after it see ``db``
    active again and the reservation pending (as a switch back that re-imported it leaves it)."""

    def __init__(self, raw: Raw) -> None:
        self._raw = raw
        self._first = True

    async def fetchval(self, sql: str, *args: object) -> object:
        value = await self._raw.fetchval(sql, *args)
        if self._first:
            self._first = False
            await self._raw.execute(
                "UPDATE app_setting SET value = 'db' WHERE name = $1", STRATEGY_SETTING
            )
        return value


async def test_a_confirm_the_fence_refused_during_a_switch_undone_since_is_strategy_moved(
    clean: Container,
) -> None:
    """Regression: it answered ReservationLost, which lapses the order just written while its
    units stay held; StrategyMoved makes the switchable stock ask the active strategy again."""
    await clean.stock_operations.use("db")
    stock = PostgresStock(clean.engine)
    option_id = await make_option(clean, stock=10)
    await stock.reserve([Line(option_id, 1)], key="raced")
    async with clean.engine.begin() as conn:
        await conn.execute(
            text("UPDATE app_setting SET value = 'counter' WHERE name = :n"),
            {"n": STRATEGY_SETTING},
        )
    engine = clean.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        with pytest.raises(StrategyMoved):
            await confirm_in(SwitchBackAfterFirstStatement(raw), "raced", strategy="db")
    await stock.confirm("raced")  # asked again, the active strategy confirms it
    assert await statuses(clean, ["raced"]) == {"raced": "confirmed"}

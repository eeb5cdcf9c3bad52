"""The db/redlock reservation statement and its batch on the real PostgreSQL: a batch answers
each reservation what a single call at that point would have answered (made, the key's
earlier reservation, over the limit, sold out, strategy moved), a refused one leaves nothing
behind, and the redlock strategy sends the buyers queued on one option as one batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import text

from shop.adapters.db.stock_fence import StrategyMoved
from shop.adapters.db.stock_reserve import ReservationAsk, reserve_all_in
from shop.adapters.db.stock_rows import Raw, raw_connection
from shop.adapters.redis import stock_redlock
from shop.adapters.redis.stock_redlock import RedlockStock
from shop.bootstrap import Container
from shop.domain.errors import PurchaseLimitExceeded, SoldOut
from shop.domain.stock.model import Line, Reservation
from tests.factories import make_option


async def _stock_and_tally(container: Container, option_id: int) -> tuple[int, dict[str, int]]:
    async with container.engine.connect() as conn:
        left = (
            await conn.execute(text("SELECT stock FROM option WHERE id = :id"), {"id": option_id})
        ).scalar_one()
        rows = await conn.execute(
            text("SELECT buyer, units FROM stock_buyer_tally WHERE option_id = :id"),
            {"id": option_id},
        )
        return int(left), {row.buyer: int(row.units) for row in rows}


async def _keys(container: Container) -> set[str]:
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT key FROM stock_reservation WHERE status = 'pending'")
        )
        return {row.key for row in rows}


async def test_a_batch_answers_each_reservation_in_order(clean: Container) -> None:
    await clean.stock_operations.use("db")
    option_id = await make_option(clean, stock=3)
    line = (Line(option_id, 1),)
    async with raw_connection(clean.engine.execution_options(isolation_level="AUTOCOMMIT")) as raw:
        first = await reserve_all_in(raw, [ReservationAsk("k1", line, "ann", 1)], strategy="db")
        asks = [
            ReservationAsk("k1", line, "ann", 1),  # a retry: its reservation, nothing more
            ReservationAsk("k2", line, "ann", 1),  # ann's second unit: over her limit
            ReservationAsk("k3", (Line(option_id, 2),), "bob", None),  # fits: 2 of 2 left
            ReservationAsk("k4", line, "cy", None),  # nothing left
        ]
        outcomes = await reserve_all_in(raw, asks, strategy="db")
    assert first == [Reservation(key="k1", lines=line)]
    assert outcomes[0] == Reservation(key="k1", lines=line)
    assert isinstance(outcomes[1], PurchaseLimitExceeded) and outcomes[1].option_id == option_id
    assert outcomes[2] == Reservation(key="k3", lines=(Line(option_id, 2),))
    assert isinstance(outcomes[3], SoldOut) and outcomes[3].option_id == option_id
    # The refused ones left nothing: no record, no tally, no units taken.
    assert await _stock_and_tally(clean, option_id) == (0, {"ann": 1, "bob": 2})
    assert await _keys(clean) == {"k1", "k3"}


async def test_a_batch_of_a_strategy_no_longer_active_writes_nothing(clean: Container) -> None:
    await clean.stock_operations.use("db")
    option_id = await make_option(clean, stock=3)
    asks = [ReservationAsk(f"m{i}", (Line(option_id, 1),), None, None) for i in range(3)]
    async with raw_connection(clean.engine.execution_options(isolation_level="AUTOCOMMIT")) as raw:
        outcomes = await reserve_all_in(raw, asks, strategy="redlock-not-active")
    assert all(isinstance(outcome, StrategyMoved) for outcome in outcomes)
    assert await _stock_and_tally(clean, option_id) == (3, {})
    assert await _keys(clean) == set()


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The keys of each batch statement the redlock strategy sends."""
    sent: list[list[str]] = []

    async def counted(
        raw: Raw, asks: Sequence[ReservationAsk], *, strategy: str
    ) -> list[Reservation | Exception]:
        sent.append([ask.key for ask in asks])
        return await reserve_all_in(raw, asks, strategy=strategy)

    monkeypatch.setattr(stock_redlock, "reserve_all_in", counted)
    return sent


async def test_redlock_buyers_queued_on_one_option_go_as_one_batch(
    clean: Container, batches: list[list[str]]
) -> None:
    await clean.stock_operations.use("redlock")
    stock = RedlockStock(clean.engine, [clean.redis])
    option_id = await make_option(clean, stock=5)
    try:
        outcomes = await asyncio.gather(
            *(
                stock.reserve(
                    [Line(option_id, 1)], key=f"b{i}", buyer=f"buyer{i}", per_buyer_limit=1
                )
                for i in range(8)
            ),
            return_exceptions=True,
        )
    finally:
        await stock.close()
    made = [outcome for outcome in outcomes if isinstance(outcome, Reservation)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, SoldOut)]
    assert (len(made), len(refused)) == (5, 3)
    # Asked in one event-loop turn: one batch, one statement, first come first served.
    assert batches == [[f"b{i}" for i in range(8)]]
    assert {r.key for r in made} == {f"b{i}" for i in range(5)}
    assert (await _stock_and_tally(clean, option_id))[0] == 0

"""The counter's scripts of concurrent purchases share round trips, and each purchase still
gets its own answer: a sale, a sold-out, a limit, a lost reservation, an outage."""

from __future__ import annotations

import asyncio
import socket

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from shop.adapters.redis.script_batches import ScriptBatches
from shop.adapters.redis.stock_counter import RedisCounterStock
from shop.adapters.redis.stock_keys import PENDING
from shop.bootstrap import Container
from shop.domain.errors import PurchaseLimitExceeded, ReservationLost, SoldOut
from shop.domain.stock.model import Line, Reservation
from tests.factories import make_option


@pytest.fixture
async def counter(clean: Container) -> RedisCounterStock:
    await clean.stock_operations.use("counter")
    return RedisCounterStock(clean.engine, clean.redis, wait=2.0, recovery_grace=0.0)


async def test_concurrent_reserves_and_confirms_share_round_trips(
    clean: Container, counter: RedisCounterStock
) -> None:
    option_id = await make_option(clean, stock=100)
    await counter.reserve([Line(option_id, 1)], key="warm")  # recovery, scripts loaded
    before = counter.batches.round_trips

    keys = [f"k{i}" for i in range(20)]
    made = await asyncio.gather(*(counter.reserve([Line(option_id, 1)], key=k) for k in keys))
    await asyncio.gather(*(counter.confirm(k) for k in keys))

    assert [r.key for r in made] == keys
    assert 2 <= counter.batches.round_trips - before <= 4, "20 reserves + 20 confirms, batched"
    assert await counter.available([option_id]) == {option_id: 79}
    pending = await clean.redis.zrange(PENDING, 0, -1)
    assert [p.decode() for p in pending] == ["warm"], "every batched confirm took effect"

    alone = counter.batches.round_trips
    await counter.reserve([Line(option_id, 1)], key="alone")
    await counter.confirm("alone")
    assert counter.batches.round_trips - alone == 2, "a lone call goes at once, by itself"


async def test_one_batch_answers_each_purchase_with_its_own_outcome(
    clean: Container, counter: RedisCounterStock
) -> None:
    scarce = await make_option(clean, stock=1)
    limited = await make_option(clean, stock=10)
    await counter.reserve([Line(limited, 1)], key="warm")
    before = counter.batches.round_trips

    outcomes = await asyncio.gather(
        counter.reserve([Line(scarce, 1)], key="first"),
        counter.reserve([Line(scarce, 1)], key="second"),
        counter.reserve([Line(limited, 2)], key="greedy", buyer="b1", per_buyer_limit=1),
        counter.reserve([Line(limited, 1)], key="modest", buyer="b2", per_buyer_limit=1),
        counter.reserve([Line(scarce, 1)], key="warm"),  # a replay: the earlier reservation
        counter.confirm("never-reserved"),
        return_exceptions=True,
    )

    assert counter.batches.round_trips - before == 1, "the six went in one pipeline"
    first, second, greedy, modest, replay, lost = outcomes
    assert isinstance(first, Reservation) and first.lines == (Line(scarce, 1),)
    assert isinstance(second, SoldOut) and second.option_id == scarce
    assert isinstance(greedy, PurchaseLimitExceeded)
    assert isinstance(modest, Reservation)
    assert isinstance(replay, Reservation) and replay.lines == (Line(limited, 1),)
    assert isinstance(lost, ReservationLost)
    assert await counter.available([scarce, limited]) == {scarce: 0, limited: 8}


async def test_a_batch_after_redis_forgot_its_scripts_loads_them_and_runs(
    clean: Container, counter: RedisCounterStock
) -> None:
    option_id = await make_option(clean, stock=10)
    await counter.reserve([Line(option_id, 1)], key="warm")
    await clean.redis.script_flush()

    made = await asyncio.gather(
        *(counter.reserve([Line(option_id, 1)], key=f"k{i}") for i in range(5))
    )
    await clean.redis.script_flush()
    await counter.confirm("k0")  # alone: Script.__call__ reloads it

    assert len(made) == 5
    assert await counter.available([option_id]) == {option_id: 4}


async def test_a_failing_script_fails_only_its_own_caller(clean: Container) -> None:
    batches = ScriptBatches(clean.redis)
    echo = clean.redis.register_script("return ARGV[1]")
    boom = clean.redis.register_script("return redis.error_reply('boom')")
    await echo(args=["warm"])
    await boom.registered_client.script_load(boom.script)

    outcomes = await asyncio.gather(
        batches.run(echo, [], ["a"]),
        batches.run(boom, [], []),
        batches.run(echo, [], ["b"]),
        return_exceptions=True,
    )

    assert outcomes[0] == b"a" and outcomes[2] == b"b"
    assert isinstance(outcomes[1], ResponseError) and "boom" in str(outcomes[1])
    assert batches.round_trips == 1


async def test_an_unreachable_redis_fails_every_caller_as_a_call_alone_would(
    clean: Container,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    down = Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    counter = RedisCounterStock(clean.engine, down, wait=0.5, recovery_grace=0.0)
    try:
        outcomes = await asyncio.gather(
            *(counter.reserve([Line(1, 1)], key=f"k{i}") for i in range(3)),
            counter.confirm("k0"),
            return_exceptions=True,
        )
    finally:
        await down.aclose()

    assert all(isinstance(o, RedisConnectionError) for o in outcomes), outcomes

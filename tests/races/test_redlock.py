"""Redlock failure modes on real servers: lost masters, expired leases. Never an oversell."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pottery import AIORedlock
from redis.asyncio.lock import Lock

from shop.adapters.embedded import EmbeddedRedis
from shop.adapters.redis.stock_keys import lock_name
from shop.adapters.redis.stock_redlock import RedlockStock
from shop.domain.errors import SoldOut, Unavailable
from shop.domain.stock.model import Line
from tests.factories import make_option, make_user
from tests.races.conftest import BuildContainer
from tests.stock_helpers import assert_conserved, buy

pytestmark = pytest.mark.slow


@pytest.fixture
def masters(tmp_path: Path) -> Iterator[list[EmbeddedRedis]]:
    servers = [EmbeddedRedis(tmp_path / f"master-{n}") for n in range(3)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.kill()
        server.stop()


async def test_redlock_sells_with_one_master_down_and_refuses_with_two(
    masters: list[EmbeddedRedis], build_container: BuildContainer
) -> None:
    shop = await build_container(
        redlock_urls=tuple(server.url for server in masters), redlock_wait=0.5
    )
    await shop.stock_operations.use("redlock")
    option_id = await make_option(shop, stock=20)
    user_id, _ = await make_user(shop)

    masters[0].kill()
    results = await asyncio.gather(
        *(buy(shop, [Line(option_id, 1)], key=f"q{n}", user_id=user_id) for n in range(60)),
        return_exceptions=True,
    )
    assert results.count("ok") == 20
    assert all(isinstance(result, SoldOut) for result in results if result != "ok"), {
        repr(result) for result in results if result != "ok"
    }

    await shop.stock.put_on_sale(option_id, 5)
    masters[1].kill()
    started = time.monotonic()
    with pytest.raises(Unavailable) as refused:
        await shop.stock.reserve([Line(option_id, 1)], key="minority")
    assert time.monotonic() - started < 3, "a buyer must be refused promptly, not left hanging"
    assert refused.value.retry_after >= 1
    assert (await shop.stock.available([option_id]))[option_id] == 5
    await assert_conserved(shop, [option_id])


async def test_a_lease_that_expires_mid_hold_never_oversells(
    build_container: BuildContainer,
) -> None:
    # A 4 ms lease is shorter than an UPDATE + COMMIT: holders of two processes overlap, and
    # only the conditional UPDATE (the fencing guard) stands between them and an oversell.
    shops = [await build_container(redlock_lease=0.004, redlock_wait=5.0) for _ in range(2)]
    await shops[0].stock_operations.use("redlock")
    option_id = await make_option(shops[0], stock=100)
    user_id, _ = await make_user(shops[0])

    results = await asyncio.gather(
        *(
            buy(shops[n % 2], [Line(option_id, 1)], key=f"e{n}", user_id=user_id)
            for n in range(300)
        ),
        return_exceptions=True,
    )

    assert results.count("ok") == 100
    assert all(isinstance(result, SoldOut) for result in results if result != "ok"), {
        repr(result) for result in results if result != "ok"
    }
    await assert_conserved(shops[0], [option_id])


async def test_the_one_master_lock_and_a_pottery_redlock_exclude_each_other(
    build_container: BuildContainer,
) -> None:
    # One master takes redis-py's Lock, several take pottery's quorum: a deployment moving
    # between the two (or processes configured apart during a rollout) must still hold each
    # option's lock one at a time, so both name the same key with the same NX semantics.
    shop = await build_container()
    strategy = shop.stock_operations.strategy("redlock")  # type: ignore[attr-defined]
    assert isinstance(strategy, RedlockStock)
    option_id = await make_option(shop, stock=1)
    one_master = strategy._lock(option_id)
    assert isinstance(one_master, Lock)
    quorum = AIORedlock(key=lock_name(option_id), masters=[shop.redis], auto_release_time=5)

    assert await one_master.acquire()
    assert not await quorum.acquire(blocking=False)
    await one_master.release()
    assert await quorum.acquire(blocking=False)
    assert not await strategy._lock(option_id).acquire()
    await quorum.release()

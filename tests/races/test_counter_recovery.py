"""Counter recovery as a buyer lives it: refused promptly while it runs, served right after."""

from __future__ import annotations

import time

import pytest

from shop.domain.errors import Unavailable
from shop.domain.stock.model import Line
from tests.factories import make_option
from tests.races.conftest import BuildContainer

pytestmark = pytest.mark.slow


async def test_a_buyer_waits_at_most_its_budget_while_the_counters_are_rebuilt(
    build_container: BuildContainer,
) -> None:
    shop = await build_container(stock_wait=0.3, stock_recovery_grace=1.5)
    await shop.stock_operations.use("counter")
    option_id = await make_option(shop, stock=5)
    await shop.stock.reserve([Line(option_id, 2)], key="before")
    await shop.redis.flushdb()

    started = time.monotonic()
    with pytest.raises(Unavailable):
        await shop.stock.reserve([Line(option_id, 1)], key="during")
    assert time.monotonic() - started < 1.0, "refused within the budget, not after the grace"

    deadline = time.monotonic() + 10
    while True:
        try:
            await shop.stock.reserve([Line(option_id, 1)], key="during")
            break
        except Unavailable:
            assert time.monotonic() < deadline, "the rebuild never finished"
    assert time.monotonic() - started >= 1.5, "the grace for in-flight orders was waited out"
    # "before" had no order, so its units are back: 5 - 1.
    assert await shop.stock.available([option_id]) == {option_id: 4}

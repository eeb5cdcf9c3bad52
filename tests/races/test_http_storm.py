"""A crash-and-retry storm over HTTP: the shop as it runs, the faults as they happen.

``shop up`` serves with two granian workers and its SAQ worker on the test's servers, with a
reservation timeout of a few seconds and the sweep every second. Hundreds of buyers race for
fewer units; each retries its purchase with the same Idempotency-Key whenever it gets no
answer (a connection cut, a 5xx) after a random pause, so retries land before, during and
after the sweep decides on the reservations they left. Meanwhile a web worker is killed with
SIGKILL, several times, so purchases die at every point of their path. Afterwards the units
left are bought until sold out: exactly the stock is sold, and ``shop stock reconcile`` is
clean. Runs on every strategy.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import psutil
import pytest
from sqlalchemy import func, select

from shop.adapters.db.tables import OptionRow, OrderLineRow, OrderRow
from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.domain.orders.status import OrderStatus
from tests.factories import make_option, make_user
from tests.races.shop_up import shop_command, shop_up
from tests.strategies import TEST_ONLY

BUYERS = 240
UNITS = 80
KILLS = 3
RESERVATION_TIMEOUT = 3


def _env(container: Container) -> dict[str, str]:
    settings = container.settings
    return {
        **os.environ,
        "SHOP_ENVIRONMENT": "test",
        "SHOP_DATABASE_URL": str(settings.database_url),
        "SHOP_REDIS_URL": str(settings.redis_url),
        "SHOP_JWT_SECRET": str(settings.jwt_secret),
        "SHOP_DATA_DIR": settings.data_dir,
        "SHOP_LOG_LEVEL": "ERROR",
        "SHOP_RATE_LIMIT_ENABLED": "false",
        "SHOP_RESERVATION_TIMEOUT": str(RESERVATION_TIMEOUT),
        "SHOP_STOCK_SWEEP_INTERVAL": "1",
        "SHOP_STOCK_SYNC_INTERVAL": "1",
        "SHOP_STOCK_RECOVERY_GRACE": "0.5",
        "SHOP_DATABASE_POOL_SIZE": "10",
        "COLUMNS": "160",
    }


@pytest.fixture
async def running_shop(clean: Container) -> AsyncIterator[str]:
    async with shop_up(_env(clean)) as base:
        yield base


def _web_workers(base: str) -> list[psutil.Process]:
    """The granian worker processes serving ``base`` (children of the granian master)."""
    port = base.rsplit(":", 1)[1]
    workers = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "granian" in " ".join(cmdline) and port in cmdline:
            workers.extend(proc.children())
    return workers


async def _buy(
    client: httpx.AsyncClient, headers: dict[str, str], option_id: int, outcomes: Counter[str]
) -> str:
    """One buyer: retries with the same key while the answer is missing, a new key after a
    409 that says the reservation was lost; stops at a sale or a sell-out."""
    key = uuid.uuid4().hex
    body = {
        "lines": [{"option_id": option_id, "quantity": 1}],
        "payment_method": "card",
        "shipping_address": "1 Storm Street",
    }
    for _ in range(60):
        try:
            answer = await client.post(
                "/api/orders", json=body, headers={**headers, "Idempotency-Key": key}
            )
        except httpx.HTTPError:
            outcomes["no answer"] += 1
            await asyncio.sleep(random.uniform(0, RESERVATION_TIMEOUT + 2))
            continue
        if answer.status_code in (200, 201):
            outcomes["sold"] += 1
            return "sold"
        if answer.status_code == 409 and answer.json().get("extra", {}).get("option_id"):
            outcomes["sold out"] += 1
            return "sold out"
        if answer.status_code == 409:  # the reservation was swept: a new purchase, a new key
            outcomes["lost, bought again"] += 1
            key = uuid.uuid4().hex
            continue
        assert answer.status_code in (500, 502, 503), answer.text
        outcomes[str(answer.status_code)] += 1
        await asyncio.sleep(random.uniform(0, RESERVATION_TIMEOUT + 2))
    raise AssertionError("a buyer never got an answer")


async def _available(client: httpx.AsyncClient, product: str) -> int:
    """Units on sale, as a buyer sees them; waits out a restart of the API (granian exits if a
    respawned worker dies again at once, and ``shop up`` starts it again)."""
    for _ in range(100):
        try:
            return int((await client.get(product)).json()["options"][0]["available"])
        except httpx.HTTPError:
            await asyncio.sleep(0.2)
    raise AssertionError("the shop stopped answering")


async def _killer(base: str) -> int:
    killed = 0
    for _ in range(KILLS):
        await asyncio.sleep(random.uniform(0.3, 1.5))
        workers = _web_workers(base)
        if workers:
            random.choice(workers).send_signal(signal.SIGKILL)
            killed += 1
    return killed


async def _sold(container: Container, option_id: int) -> int:
    async with container.engine.connect() as conn:
        sold = await conn.scalar(
            select(func.coalesce(func.sum(OrderLineRow.quantity), 0))
            .join(OrderRow, OrderRow.id == OrderLineRow.order_id)
            .where(
                OrderLineRow.option_id == option_id,
                OrderRow.status.in_(OrderStatus.values(OrderStatus.RELEASABLE)),
            )
        )
    return int(sold or 0)


@pytest.mark.slow
@pytest.mark.timeout(600)
# Served by `shop up` subprocesses: only the strategies bootstrap registers (see tests/strategies).
@pytest.mark.parametrize("strategy", sorted(set(STOCK_STRATEGIES) - TEST_ONLY))
async def test_a_crash_and_retry_storm_sells_exactly_the_stock(
    clean: Container, running_shop: str, strategy: str
) -> None:
    await clean.stock_operations.use(strategy)
    option_id = await make_option(clean, stock=UNITS)
    users = [await make_user(clean) for _ in range(12)]
    outcomes: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=running_shop, timeout=10, limits=limits) as client:
        storm = [_buy(client, users[n % len(users)][1], option_id, outcomes) for n in range(BUYERS)]
        killer = asyncio.ensure_future(_killer(running_shop))
        await asyncio.gather(*storm)
        assert await killer >= 1, "no web worker was killed"

        # Let the sweep settle every reservation the dead attempts left, then sell the rest.
        await asyncio.sleep(RESERVATION_TIMEOUT + 3)
        product = f"/api/products/{await _product_of(clean, option_id)}"
        while await _available(client, product) > 0:
            await _buy(client, users[0][1], option_id, outcomes)

    assert await _sold(clean, option_id) == UNITS, outcomes
    await asyncio.sleep(RESERVATION_TIMEOUT + 2)
    reconcile = await asyncio.create_subprocess_exec(
        shop_command(),
        "stock",
        "reconcile",
        env=_env(clean),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    report, _ = await asyncio.wait_for(reconcile.communicate(), timeout=60)
    assert reconcile.returncode == 0, report.decode()
    assert await _sold(clean, option_id) == UNITS, outcomes
    print(f"storm on {strategy}: {dict(outcomes)}")  # what the buyers met (pytest -s)


async def _product_of(container: Container, option_id: int) -> int:
    async with container.engine.connect() as conn:
        return int(
            await conn.scalar(select(OptionRow.product_id).where(OptionRow.id == option_id)) or 0
        )

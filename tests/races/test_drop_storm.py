"""A drop over real HTTP: ``shop up`` with two app workers (and its SAQ worker), 500 buyers.

Everyone joins the waiting room in the pre-queue; at the start they are admitted at the
configured rate (on Redis's clock) in a random order, never more than the units left; the
admitted buy with their tokens and pay, except one who forgets. Exactly the stock is sold,
nobody holds more than the per-buyer limit, and once it is sold out every still-waiting
buyer's next poll says ``sold_out``. The forgotten order expires (its payment window is the
drop's), its unit comes back, and exactly one more buyer is admitted and buys it.
The forgotten order is the one that took the last unit, so that it expires a whole payment
window after the sell-out, however long the sale itself took on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from tests.factories import make_option, make_user
from tests.races.shop_up import shop_up
from tests.races.test_http_storm import _env

BUYERS = 500
UNITS_PER_OPTION = 15
RATE = 25
# Seconds to pay, for the drop's orders: long enough for every buyer but the forgotten one to
# pay through the sandbox (500 pollers share the client's connections), short for the test.
WINDOW = 30
TTL = 120  # generous: on a loaded machine a purchase may wait long for a connection


@pytest.fixture
async def drop_shop(clean: Container) -> AsyncIterator[str]:
    env = {
        **_env(clean),
        "SHOP_ORDER_EXPIRY_INTERVAL": "1",
        "SHOP_ORDER_SWEEP_INTERVAL": "1",
        "SHOP_DROP_ROOM_REFRESH_INTERVAL": "1",
    }
    async with shop_up(env) as base:
        yield base


@dataclass
class Sale:
    drop_id: int
    options: list[int]
    admissions: list[tuple[datetime, int]] = field(default_factory=list)  # (Redis time, buyer)
    sold: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    sold_out_at: float | None = None  # monotonic, when the last unit's order came back
    late_polls: list[tuple[int, str]] = field(default_factory=list)  # polls sent after it
    forgotten: str | None = None
    phase: str = "selling"
    all_sold: asyncio.Event = field(default_factory=asyncio.Event)
    resold: asyncio.Event = field(default_factory=asyncio.Event)


async def _buyer(
    client: httpx.AsyncClient, n: int, headers: dict[str, str], sale: Sale, stop: asyncio.Event
) -> None:
    queue = f"/api/drops/{sale.drop_id}/queue"
    while not stop.is_set():
        sent = time.monotonic()
        answer = await client.get(queue, headers=headers)
        assert answer.status_code == 200, answer.text
        ticket = answer.json()
        if sale.sold_out_at is not None and sent > sale.sold_out_at and sale.phase == "selling":
            sale.late_polls.append((n, ticket["status"]))
        if ticket["status"] == "admitted":
            admitted_at = datetime.fromisoformat(ticket["admission_expires_at"])
            sale.admissions.append((admitted_at - timedelta(seconds=TTL), n))
            await _purchase(client, n, headers, ticket["admission_token"], sale)
            return
        await asyncio.sleep(1.0)


async def _purchase(
    client: httpx.AsyncClient, n: int, headers: dict[str, str], token: str, sale: Sale
) -> None:
    first = n % len(sale.options)
    answer = None
    for option in sale.options[first:] + sale.options[:first]:  # the other if one sold out
        body = {
            "lines": [{"option_id": option, "quantity": 1}],
            "payment_method": "card",
            "shipping_address": "1 Drop Street",
        }
        answer = await client.post(
            "/api/orders",
            json=body,
            headers={**headers, "Admission-Token": token, "Idempotency-Key": uuid.uuid4().hex},
        )
        if answer.status_code != 409:
            break
    assert answer is not None
    if answer.status_code == 409:  # admitted, but every unit went to others meanwhile
        sale.refused.append(n)
        return
    assert answer.status_code == 201, answer.text
    order = answer.json()
    sale.sold.append(n)
    if len(sale.sold) == 2 * UNITS_PER_OPTION and sale.sold_out_at is None:
        sale.sold_out_at = time.monotonic()
        sale.all_sold.set()
    if len(sale.sold) > 2 * UNITS_PER_OPTION:
        sale.resold.set()
    if len(sale.sold) == 2 * UNITS_PER_OPTION:
        # The buyer of the last unit never pays: the order expires a payment window after
        # the sell-out, well after every waiting buyer has polled "sold_out" again.
        sale.forgotten = order["id"]
        return
    # Paying is the gateway's word: start a payment and press Pay on the sandbox's checkout;
    # the shop's worker then delivers the signed webhook to the shop.
    started = await client.post(f"/api/orders/{order['id']}/payments", headers=headers)
    assert started.status_code == 201, started.text
    checkout = httpx.URL(started.json()["checkout_url"]).path
    pressed = await client.post(f"{checkout}/pay")
    assert pressed.status_code == 200, pressed.text


async def _orders_by_status(clean: Container, drop_id: int) -> dict[str, int]:
    async with clean.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT status, count(*) AS n FROM purchase_order WHERE drop_id = :d "
                "GROUP BY status"
            ),
            {"d": drop_id},
        )
        return {row.status: row.n for row in rows}


async def _until_only_the_forgotten_is_unpaid(clean: Container, drop_id: int) -> None:
    """Every buyer but the forgotten one pays; wait for their webhooks before the expiry
    phase, so the one order that expires is the forgotten one (not a payment that was late)."""
    for _ in range(40):
        statuses = await _orders_by_status(clean, drop_id)
        if statuses.get("pending_payment", 0) <= 1:
            break
        await asyncio.sleep(0.5)
    assert statuses.get("pending_payment", 0) == 1, statuses
    assert "expired" not in statuses, statuses


async def _live_units(clean: Container, drop_id: int) -> list[Any]:
    async with clean.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT o.user_id, l.option_id, sum(l.quantity) AS units, count(*) AS orders "
                "FROM purchase_order o JOIN order_line l ON l.order_id = o.id "
                "WHERE o.drop_id = :d AND o.status NOT IN ('cancelled', 'expired') "
                "GROUP BY o.user_id, l.option_id"
            ),
            {"d": drop_id},
        )
        return list(rows)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_queued_drop_over_http_sells_exactly_the_stock_fairly(
    clean: Container, drop_shop: str
) -> None:
    options = [await make_option(clean, stock=UNITS_PER_OPTION) for _ in range(2)]
    _, admin = await make_user(clean, role=Role.ADMIN)
    buyers = [(await make_user(clean))[1] for _ in range(BUYERS)]
    starts = datetime.now(UTC) + timedelta(seconds=12)
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=drop_shop, timeout=30, limits=limits) as client:
        created = await client.post(
            "/api/admin/drops",
            json={
                "name": "Storm drop",
                "option_ids": options,
                "starts_at": starts.isoformat(),
                "queue_enabled": True,
                "admit_per_second": RATE,
                "admission_ttl_seconds": TTL,
                "payment_window_seconds": WINDOW,
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
        sale = Sale(drop_id=created.json()["id"], options=options)
        queue = f"/api/drops/{sale.drop_id}/queue"

        # Everyone joins in the pre-queue, in a known order (batches of 50, one after another).
        for first in range(0, BUYERS, 50):
            joined = await asyncio.gather(
                *(client.post(queue, headers=h) for h in buyers[first : first + 50])
            )
            assert all(j.json()["status"] == "waiting" for j in joined), joined[0].text
        assert datetime.now(UTC) < starts, "the joins took longer than the pre-queue"
        await asyncio.sleep((starts - datetime.now(UTC)).total_seconds())

        stop = asyncio.Event()
        pollers = [
            asyncio.ensure_future(_buyer(client, n, h, sale, stop)) for n, h in enumerate(buyers)
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sale.all_sold.wait(), timeout=120)
        assert sale.sold_out_at is not None, f"only {len(sale.sold)} sold"
        await asyncio.sleep(2.5)  # every waiting buyer polls again at least once
        await _until_only_the_forgotten_is_unpaid(clean, sale.drop_id)
        admitted_before_expiry = len(sale.admissions)

        # The forgotten order expires after the drop's payment window: one more admission.
        sale.phase = "expiring"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sale.resold.wait(), timeout=WINDOW + 60)
        await asyncio.sleep(2.5)
        stop.set()
        await asyncio.gather(*pollers)

    print(
        f"drop storm: {len(sale.admissions)} admitted, {len(sale.sold)} sold, "
        f"{len(sale.refused)} refused, {len(sale.late_polls)} polls after the sell-out"
    )
    assert len(sale.sold) == 2 * UNITS_PER_OPTION + 1  # the stock, and the unit that came back
    assert not sale.refused  # never more admissions than units
    assert len(sale.admissions) == admitted_before_expiry + 1  # exactly one more admitted
    assert sale.late_polls and all(status == "sold_out" for _, status in sale.late_polls)
    rows = await _live_units(clean, sale.drop_id)
    assert sum(row.units for row in rows) == 2 * UNITS_PER_OPTION  # exactly the stock
    assert all(row.units == 1 and row.orders == 1 for row in rows)  # nobody over the limit
    # Admitted at the rate (the token bucket's law on Redis's clock) ...
    times = sorted(when for when, _ in sale.admissions)
    for k, when in enumerate(times, start=1):
        assert k <= RATE + RATE * (when - times[0]).total_seconds() + 1e-6
    # ... and in a random order, not the join order.
    order = [n for _, n in sorted(sale.admissions)]
    assert order != sorted(order)
    assert max(order) > 2 * len(order), "the first joiners were admitted first"

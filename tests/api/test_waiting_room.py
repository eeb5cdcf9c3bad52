"""The waiting room over HTTP (in process): join, poll, admission tokens, sold out, loss."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from saq.types import Context

from shop.adapters.redis import waiting_room
from shop.bootstrap import Container
from shop.domain.drops.queue import Admission
from shop.domain.identity.model import Role
from shop.entrypoints.workers import refresh_waiting_rooms
from tests.drops_helpers import announce, start_now
from tests.factories import make_option, make_user
from tests.orders_client import order_body, place


@pytest.fixture
async def admin_headers(clean: Container) -> dict[str, str]:
    _, headers = await make_user(clean, role=Role.ADMIN)
    return headers


async def _buyers(clean: Container, n: int) -> list[tuple[uuid.UUID, dict[str, str]]]:
    return [await make_user(clean) for _ in range(n)]


def _queue(drop_id: int) -> str:
    return f"/api/drops/{drop_id}/queue"


async def _buy(
    client: httpx.AsyncClient, headers: dict[str, str], option: int, token: str | None
) -> httpx.Response:
    extra = {} if token is None else {"Admission-Token": token}
    return await place(client, {**headers, **extra}, order_body((option, 1)))


async def test_pre_queue_places_are_drawn_then_admitted_at_the_rate_up_to_the_stock(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=6)
    drop = await announce(client, admin_headers, [option], queue_enabled=True, admit_per_second=4)
    buyers = await _buyers(clean, 10)
    too_early = (await client.post(_queue(drop["id"]), headers=buyers[0][1])).json()
    assert too_early["status"] == "not_open"  # the pre-queue opens 10 minutes before
    path = f"/api/admin/drops/{drop['id']}"
    opened = await client.patch(path, json={"pre_queue_seconds": 7200}, headers=admin_headers)
    assert opened.status_code == 200, opened.text
    for _, headers in buyers:
        joined = (await client.post(_queue(drop["id"]), headers=headers)).json()
        assert joined["status"] == "waiting" and joined["position"] is None
        assert joined["eta_seconds"] >= 3500  # the drop starts in an hour
    again = (await client.post(_queue(drop["id"]), headers=buyers[0][1])).json()
    assert again["status"] == "waiting"  # joining again keeps the place

    await start_now(clean, drop["id"])
    polled = [(await client.get(_queue(drop["id"]), headers=h)).json() for _, h in buyers]
    admitted = [p for p in polled if p["status"] == "admitted"]
    assert 4 <= len(admitted) <= 6  # the bucket's first second, never more than the stock
    assert_admitted_at_rate(admitted, rate=4, ttl=timedelta(seconds=120))
    waiting = sorted(p["position"] for p in polled if p["status"] == "waiting")
    assert waiting == list(range(1, 11 - len(admitted)))
    assert all(p["eta_seconds"] == -(-p["ahead"] // 4) for p in polled if p["status"] == "waiting")


def assert_admitted_at_rate(tickets: list[dict[str, Any]], *, rate: int, ttl: timedelta) -> None:
    """The token bucket's law, on Redis's clock (admission time = expiry − ttl): by the time
    of the k-th admission, at most one second's burst plus ``rate`` per second since the
    first one were admitted."""
    times = sorted(datetime.fromisoformat(t["admission_expires_at"]) - ttl for t in tickets)
    for k, when in enumerate(times, start=1):
        assert k <= rate + rate * (when - times[0]).total_seconds() + 1e-6, (k, times)


async def test_a_queued_drop_sells_only_with_a_valid_admission_token(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=5)
    drop = await announce(client, admin_headers, [option], queue_enabled=True)
    await start_now(clean, drop["id"])
    (alice_id, alice), (_, bob) = await _buyers(clean, 2)
    without = await _buy(client, alice, option, None)
    assert without.status_code == 403
    assert without.json()["extra"]["queue"]["join"] == _queue(drop["id"])
    assert (await client.get(_queue(drop["id"]), headers=alice)).status_code == 404  # not joined
    ticket = (await client.post(_queue(drop["id"]), headers=alice)).json()
    assert ticket["status"] == "admitted", ticket
    token = ticket["admission_token"]
    assert (await _buy(client, bob, option, token)).status_code == 403  # someone else's
    assert (await _buy(client, alice, option, token[:-2] + "xx")).status_code == 403  # forged
    expired = clean.admissions.issue(
        Admission(alice_id, drop["id"], ticket_expiry(ticket) - _seconds(3600))
    )
    assert (await _buy(client, alice, option, expired)).status_code == 403
    assert (await _buy(client, alice, option, token)).status_code == 201


def ticket_expiry(ticket: dict[str, str]) -> datetime:
    return datetime.fromisoformat(ticket["admission_expires_at"])


def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)


async def test_waiting_buyers_see_sold_out_on_their_next_poll_and_a_unit_back_admits_one(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=2)
    drop = await announce(
        client,
        admin_headers,
        [option],
        queue_enabled=True,
        admit_per_second=50,
        pre_queue_seconds=7200,
    )
    buyers = await _buyers(clean, 6)
    for _, headers in buyers:
        await client.post(_queue(drop["id"]), headers=headers)
    await start_now(clean, drop["id"])
    polled = [(await client.get(_queue(drop["id"]), headers=h)).json() for _, h in buyers]
    winners = [(b, p) for b, p in zip(buyers, polled, strict=True) if p["status"] == "admitted"]
    assert len(winners) == 2  # never more admissions than units
    orders = []
    for (_, headers), ticket in winners:
        bought = await _buy(client, headers, option, ticket["admission_token"])
        assert bought.status_code == 201
        orders.append((headers, bought.json()["id"]))
    rest = [b for b in buyers if b not in [w for w, _ in winners]]
    for _, headers in rest:
        assert (await client.get(_queue(drop["id"]), headers=headers)).json()["status"] == (
            "sold_out"
        )
    headers, order_id = orders[0]
    assert (await client.post(f"/api/orders/{order_id}/cancel", headers=headers)).status_code == 200
    after = [(await client.get(_queue(drop["id"]), headers=h)).json()["status"] for _, h in rest]
    assert sorted(after) == ["admitted", "waiting", "waiting", "waiting"]


async def test_a_lost_room_is_reported_and_rebuilt_empty(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=2)
    drop = await announce(
        client, admin_headers, [option], queue_enabled=True, pre_queue_seconds=7200
    )
    ((_, alice),) = await _buyers(clean, 1)
    await client.post(_queue(drop["id"]), headers=alice)
    await clean.redis.flushdb()
    lost = await client.get(_queue(drop["id"]), headers=alice)
    assert lost.status_code == 503, lost.text  # reported, never guessed
    assert (await client.post(_queue(drop["id"]), headers=alice)).status_code == 503
    assert await refresh_waiting_rooms(cast("Context", {"container": clean})) == 1
    assert (await client.get(_queue(drop["id"]), headers=alice)).status_code == 404
    assert (await client.post(_queue(drop["id"]), headers=alice)).json()["status"] == "waiting"


async def test_joining_an_unknown_drop_is_404(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    await announce(client, admin_headers, [await make_option(clean, stock=1)], queue_enabled=True)
    await refresh_waiting_rooms(cast("Context", {"container": clean}))
    ((_, alice),) = await _buyers(clean, 1)
    assert (await client.post(_queue(4242), headers=alice)).status_code == 404


async def test_an_unknown_drop_is_404_before_the_first_drop_and_after_a_flush(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    """Regression: with no drop published yet, or after a Redis flush, an unknown drop id was
    503 ("lost") until the first publish. Each worker run now marks the room complete."""
    ((_, alice),) = await _buyers(clean, 1)
    assert (await client.post(_queue(4242), headers=alice)).status_code == 503  # never run
    await refresh_waiting_rooms(cast("Context", {"container": clean}))
    for route in (client.post, client.get):
        unknown = await route(_queue(4242), headers=alice)
        assert unknown.status_code == 404, unknown.text
    drop = await announce(
        client, admin_headers, [await make_option(clean, stock=1)], queue_enabled=True
    )
    await clean.redis.flushdb()
    assert (await client.get(_queue(drop["id"]), headers=alice)).status_code == 503
    assert await refresh_waiting_rooms(cast("Context", {"container": clean})) == 1
    assert (await client.get(_queue(4242), headers=alice)).status_code == 404
    assert (await client.post(_queue(drop["id"]), headers=alice)).status_code == 200


async def test_a_publish_alone_does_not_claim_every_room_is_back(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    """After a flush, a new drop's publish must not turn the lost drops' 503 into a 404."""
    option, other = await make_option(clean, stock=1), await make_option(clean, stock=1)
    lost = await announce(client, admin_headers, [option], queue_enabled=True)
    await refresh_waiting_rooms(cast("Context", {"container": clean}))
    await clean.redis.flushdb()
    await announce(client, admin_headers, [other], queue_enabled=True)
    ((_, alice),) = await _buyers(clean, 1)
    assert (await client.post(_queue(lost["id"]), headers=alice)).status_code == 503


async def test_an_unused_admission_expires_and_frees_its_slot(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=1)
    drop = await announce(
        client,
        admin_headers,
        [option],
        queue_enabled=True,
        admission_ttl_seconds=1,
        pre_queue_seconds=7200,
    )
    (_, first), (_, second) = await _buyers(clean, 2)
    await client.post(_queue(drop["id"]), headers=first)
    await client.post(_queue(drop["id"]), headers=second)
    await start_now(clean, drop["id"])
    polls = [(await client.get(_queue(drop["id"]), headers=h)).json() for h in (first, second)]
    assert [p["status"] for p in polls] == ["admitted", "waiting"] or [
        p["status"] for p in polls
    ] == ["waiting", "admitted"]
    late, early = (second, first) if polls[0]["status"] == "admitted" else (first, second)
    await asyncio.sleep(1.2)  # the admission's lifetime passes unused
    assert (await client.get(_queue(drop["id"]), headers=late)).json()["status"] == "admitted"
    assert (await client.get(_queue(drop["id"]), headers=early)).status_code == 404  # rejoin


async def test_the_event_stream_sends_the_answers_until_admitted(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=3)
    drop = await announce(client, admin_headers, [option], queue_enabled=True)
    await start_now(clean, drop["id"])
    ((_, alice),) = await _buyers(clean, 1)
    assert (await client.get(f"{_queue(drop['id'])}/events", headers=alice)).status_code == 404
    await client.post(_queue(drop["id"]), headers=alice)
    streamed = await client.get(f"{_queue(drop['id'])}/events", headers=alice)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [line[5:].strip() for line in streamed.text.splitlines() if line.startswith("data:")]
    assert len(events) == 1 and '"status":"admitted"' in events[0]


async def test_the_dashboard_and_gauges_show_the_drop_and_its_queue(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    option = await make_option(clean, stock=4)
    drop = await announce(
        client, admin_headers, [option], queue_enabled=True, pre_queue_seconds=7200
    )
    for _, headers in await _buyers(clean, 3):
        await client.post(_queue(drop["id"]), headers=headers)
    (figures,) = await clean.observation.drops.live()
    assert (figures.drop_id, figures.queue_length, figures.admitted) == (drop["id"], 3, 0)
    assert figures.option_ids == (option,) and figures.admission_rate == 10.0


async def _statuses(
    client: httpx.AsyncClient, drop_id: int, buyers: list[tuple[uuid.UUID, dict[str, str]]]
) -> list[dict[str, Any]]:
    return [(await client.get(_queue(drop_id), headers=h)).json() for _, h in buyers]


async def test_an_admission_holds_the_per_buyer_limit(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    """Regression: an admission held one unit even when a buyer may take two, so three
    buyers were admitted for three units and the third found nothing after the first two
    bought their two each. Now: 2 + 1 units held, the third waits until a unit is free."""
    option = await make_option(clean, stock=3)
    drop = await announce(client, admin_headers, [option], queue_enabled=True, per_buyer_limit=2)
    buyers, tickets = await _two_admitted_one_waiting(client, clean, drop["id"])
    first = tickets[0]["admission_token"]
    two = await place(client, {**buyers[0][1], "Admission-Token": first}, order_body((option, 2)))
    assert two.status_code == 201, two.text
    # One unit left, held by the second buyer: the third still waits, not sold out.
    assert (await _statuses(client, drop["id"], buyers[2:]))[0]["status"] == "waiting"
    second = await _buy(client, buyers[1][1], option, tickets[1]["admission_token"])
    assert second.status_code == 201, second.text
    assert (await _statuses(client, drop["id"], buyers[2:]))[0]["status"] == "sold_out"


async def _two_admitted_one_waiting(
    client: httpx.AsyncClient, clean: Container, drop_id: int
) -> tuple[list[tuple[uuid.UUID, dict[str, str]]], list[dict[str, Any]]]:
    """Open the drop and queue three buyers: with the room's rule, the first two are admitted
    (their holds take what is free) and the third waits."""
    await start_now(clean, drop_id)
    buyers = await _buyers(clean, 3)
    for _, headers in buyers:
        await client.post(_queue(drop_id), headers=headers)
    tickets = await _statuses(client, drop_id, buyers)
    assert [t["status"] for t in tickets] == ["admitted", "admitted", "waiting"]
    return buyers, tickets


async def _refused_then(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> tuple[int, list[tuple[uuid.UUID, dict[str, str]]], list[dict[str, Any]]]:
    """Two options of one unit, three buyers: the first buys the small one, the second is
    refused for it (sold out); the third waits. Returns the large option, buyers, tickets."""
    small, large = await make_option(clean, stock=1), await make_option(clean, stock=1)
    drop = await announce(client, admin_headers, [small, large], queue_enabled=True)
    buyers, tickets = await _two_admitted_one_waiting(client, clean, drop["id"])
    taken = await _buy(client, buyers[0][1], small, tickets[0]["admission_token"])
    assert taken.status_code == 201, taken.text
    refused = await _buy(client, buyers[1][1], small, tickets[1]["admission_token"])
    assert refused.status_code == 409, refused.text
    return large, buyers, tickets


async def test_a_refused_buyer_keeps_their_unit_while_they_pick_another(
    client: httpx.AsyncClient, clean: Container, admin_headers: dict[str, str]
) -> None:
    large, buyers, tickets = await _refused_then(client, clean, admin_headers)
    drop_id = (await client.get("/api/drops")).json()["items"][0]["id"]
    assert (await _statuses(client, drop_id, buyers[2:]))[0]["status"] == "waiting"
    other = await _buy(client, buyers[1][1], large, tickets[1]["admission_token"])
    assert other.status_code == 201, other.text  # nobody was admitted for that unit meanwhile
    assert (await _statuses(client, drop_id, buyers[2:]))[0]["status"] == "sold_out"


async def test_a_refused_buyer_who_leaves_hands_their_hold_on_after_the_grace(
    client: httpx.AsyncClient,
    clean: Container,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a buyer refused for the option they picked held their unit until their
    admission expired (minutes), while the next buyer waited for it."""
    monkeypatch.setattr(waiting_room, "REFUSAL_GRACE_MS", 300)
    large, buyers, _ = await _refused_then(client, clean, admin_headers)
    drop_id = (await client.get("/api/drops")).json()["items"][0]["id"]
    await asyncio.sleep(0.4)
    third = (await _statuses(client, drop_id, buyers[2:]))[0]
    assert third["status"] == "admitted"
    bought = await _buy(client, buyers[2][1], large, third["admission_token"])
    assert bought.status_code == 201, bought.text
    assert (await _statuses(client, drop_id, buyers[1:2]))[0]["status"] == "admitted"


async def test_the_document_declares_the_403_of_a_purchase_without_admission(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert "403" in document["paths"]["/api/orders"]["post"]["responses"]

"""Abuse protection through the real app and the real Redis: quotas per address and per user,
blocking that kicks in and expires, limits shared by several app instances."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

import httpx
import jwt
from litestar import Litestar
from redis.asyncio import Redis

from shop.adapters.batched_counter import BatchedRequestCounter
from shop.adapters.redis.ratelimit import RedisRequestCounter
from shop.bootstrap import Container
from shop.domain.identity.model import Principal, Role
from shop.domain.identity.throttle import Quota
from shop.entrypoints.http.app import create_app
from shop.entrypoints.http.auth import _remembered_principal, remember_principal
from tests.conftest import TEST_JWT_SECRET, http_client, make_user, with_settings

WRONG = {"email": "ann@example.com", "password": "wrong Passw0rd"}


def _app(container: Container, **changes: Any) -> Litestar:
    settings: dict[str, Any] = {
        "rate_limit_enabled": True,
        "rate_limit_anonymous": "50/minute",
        "rate_limit_sign_in": "50/minute",
        "rate_limit_user": "50/minute",
        "rate_limit_block_after": 50,
        "rate_limit_block_seconds": 1,
        **changes,
    }
    return create_app(with_settings(container, **settings))


async def _log_in(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/api/auth/login", json=WRONG, headers=headers)


async def test_sign_in_is_limited_then_the_address_is_blocked_then_free_again(
    clean: Container,
) -> None:
    app = _app(clean, rate_limit_sign_in="2/minute", rate_limit_block_after=2)
    async with http_client(app) as client:
        assert [(await _log_in(client)).status_code for _ in range(2)] == [401, 401]

        limited = await _log_in(client)
        assert limited.status_code == 429
        assert limited.json()["status_code"] == 429
        assert "slow down" in limited.json()["detail"]
        assert 55 <= int(limited.headers["retry-after"]) <= 60

        blocked = await _log_in(client)
        assert blocked.status_code == 429
        assert "blocked" in blocked.json()["detail"]
        assert blocked.headers["retry-after"] == "1"
        assert blocked.json()["extra"] == {"retry_after": 1}
        # The block covers every anonymous request from the address, not only sign-in.
        browsing = await client.get("/api/me")
        assert browsing.status_code == 429
        assert "blocked" in browsing.json()["detail"]

        await asyncio.sleep(1.1)
        assert (await _log_in(client)).status_code == 401
        assert (await client.get("/api/me")).status_code == 401


async def test_limits_and_blocks_are_shared_by_two_app_instances(clean: Container) -> None:
    changes = {"rate_limit_sign_in": "4/minute", "rate_limit_block_after": 2}
    # A second container: its own Redis connections, as a second process would have.
    other = Container.build(clean.settings)
    try:
        first, second = _app(clean, **changes), _app(other, **changes)
        async with http_client(first) as one, http_client(second) as two:
            admitted = [(await _log_in(c)).status_code for c in (one, two, one, two)]
            assert admitted == [401, 401, 401, 401]
            assert (await _log_in(one)).status_code == 429
            blocking = await _log_in(two)
            assert "blocked" in blocking.json()["detail"]
            learnt = await one.get("/api/me")
            assert learnt.status_code == 429
            assert "blocked" in learnt.json()["detail"], "the block set via `two` holds on `one`"

            await asyncio.sleep(1.1)
            assert (await _log_in(one)).status_code == 401
            assert (await _log_in(two)).status_code == 401
    finally:
        await other.close()


async def test_an_anonymous_flood_over_two_instances_is_blocked_on_both(clean: Container) -> None:
    changes = {
        "rate_limit_anonymous": "3/minute",
        "rate_limit_block_after": 3,
        "rate_limit_block_seconds": 30,
    }
    other = Container.build(clean.settings)
    try:
        first, second = _app(clean, **changes), _app(other, **changes)
        async with http_client(first) as one, http_client(second) as two:
            statuses = []
            for client in (one, two) * 6:
                statuses.append((await client.get("/api/me")).status_code)
                await asyncio.sleep(0.1)  # two ticks: each instance flushes its hits
            assert statuses[:3] == [401, 401, 401]
            assert statuses.count(401) <= 3 + 1, "at most one tick's worth over the quota"
            for client in (one, two):
                blocked = await client.get("/api/me")
                assert blocked.status_code == 429
                assert "blocked" in blocked.json()["detail"]
                assert 25 <= int(blocked.headers["retry-after"]) <= 30
    finally:
        await other.close()


async def test_users_are_counted_per_user_apart_from_their_address(clean: Container) -> None:
    _, ann = await make_user(clean)
    _, bob = await make_user(clean)
    app = _app(clean, rate_limit_user="3/minute", rate_limit_anonymous="2/minute")
    async with http_client(app) as client:
        assert [(await client.get("/api/me", headers=ann)).status_code for _ in range(3)] == [
            200,
            200,
            200,
        ]
        refused = await client.get("/api/me", headers=ann)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert (await client.get("/api/me", headers=bob)).status_code == 200
        # Ann's and Bob's requests used none of the address's anonymous quota.
        assert [(await client.get("/api/me")).status_code for _ in range(3)] == [401, 401, 429]


async def test_a_bad_token_is_counted_as_anonymous(clean: Container) -> None:
    app = _app(clean, rate_limit_anonymous="2/minute")
    garbage = {"Authorization": "Bearer not.a.token"}
    async with http_client(app) as client:
        statuses = [(await client.get("/api/me", headers=garbage)).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


async def test_a_token_does_not_lift_the_sign_in_quota(clean: Container) -> None:
    _, ann = await make_user(clean)
    app = _app(clean, rate_limit_sign_in="2/minute")
    async with http_client(app) as client:
        statuses = [(await _log_in(client, **ann)).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


async def test_a_forged_forwarded_for_buys_no_fresh_quota(clean: Container) -> None:
    app = _app(clean, rate_limit_sign_in="2/minute")
    async with http_client(app) as client:
        statuses = [
            (await _log_in(client, **{"X-Forwarded-For": f"198.51.100.{i}"})).status_code
            for i in range(3)
        ]
    assert statuses == [401, 401, 429]


async def test_addresses_forwarded_by_a_trusted_proxy_are_counted_apart(
    clean: Container,
) -> None:
    # The test client connects from 127.0.0.1: here it plays the load balancer.
    app = _app(clean, rate_limit_sign_in="2/minute", trusted_proxies=("127.0.0.0/8",))
    async with http_client(app) as client:
        first = {"X-Forwarded-For": "198.51.100.1"}
        assert [(await _log_in(client, **first)).status_code for _ in range(3)] == [401, 401, 429]
        second = {"X-Forwarded-For": "6.6.6.6, 198.51.100.2"}
        assert (await _log_in(client, **second)).status_code == 401


async def test_health_probes_are_never_throttled(clean: Container) -> None:
    app = _app(clean, rate_limit_anonymous="1/minute", rate_limit_block_after=1)
    async with http_client(app) as client:
        for _ in range(5):
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/ready")).status_code == 200


async def test_the_throttle_can_be_switched_off(clean: Container) -> None:
    app = _app(clean, rate_limit_enabled=False, rate_limit_sign_in="1/minute")
    async with http_client(app) as client:
        assert {(await _log_in(client)).status_code for _ in range(5)} == {401}
    assert [key async for key in clean.redis.scan_iter("shop:throttle:*")] == []


async def test_requests_go_through_when_the_counters_are_unreachable(clean: Container) -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        broken = dataclasses.replace(clean, request_counter=RedisRequestCounter(dead))
        async with http_client(_app(broken, rate_limit_sign_in="1/minute")) as client:
            assert [(await _log_in(client)).status_code for _ in range(3)] == [401, 401, 401]
    finally:
        await dead.aclose()


async def _command_calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}


async def test_an_admitted_request_costs_at_most_one_redis_round_trip(clean: Container) -> None:
    _, ann = await make_user(clean)
    # A tick far longer than the test: only the explicit flushes send. With the real 50 ms
    # tick, a slow CI machine flushed once in the middle of the ten requests (two round trips).
    counter = BatchedRequestCounter(clean.request_counter, tick_seconds=3600)  # type: ignore[arg-type]
    try:
        container = dataclasses.replace(clean, batched_request_counter=counter)
        async with http_client(_app(container)) as client:
            await client.get("/api/me", headers=ann)  # warm-up: loads the Lua scripts
            await client.get("/api/me")
            await counter.flush()
            before = await _command_calls(clean.redis)
            for headers in [ann, {}] * 5:
                assert (await client.get("/api/me", headers=headers)).status_code in (200, 401)
            await counter.flush()
            after = await _command_calls(clean.redis)
    finally:
        await counter.close()
    sent = {name: after[name] - before.get(name, 0) for name in after}
    sent = {name: calls for name, calls in sent.items() if calls}
    # Ann's and the address's ten requests were sent together, in one round trip.
    assert sent.pop("evalsha") == 1
    assert set(sent) <= {"incrby", "expire", "pttl", "info"}, sent


async def test_two_app_instances_refuse_a_user_over_quota_a_tick_later(clean: Container) -> None:
    ann_id, ann = await make_user(clean)
    other = Container.build(clean.settings)  # another process: its own connections and tally
    try:
        first = _app(clean, rate_limit_user="4/minute")
        second = _app(other, rate_limit_user="4/minute")
        async with http_client(first) as one, http_client(second) as two:
            statuses = []
            for client in (one, two) * 4:
                statuses.append((await client.get("/api/me", headers=ann)).status_code)
                await asyncio.sleep(0.2)  # a few ticks: the instance has flushed its hit
            # Each instance judges on the shared count as of its own last flush, so the
            # other's latest hit is missed once: one request over the quota of 4, then
            # both refuse.
            assert statuses == [200] * 5 + [429] * 3
            refused = await one.get("/api/me", headers=ann)
            assert 1 <= int(refused.headers["retry-after"]) <= 60
    finally:
        await other.close()
    await clean.batched_request_counter.flush()  # type: ignore[attr-defined]
    # Every request was counted in Redis, the refused ones too: 8 + 1, and this one.
    assert await RedisRequestCounter(clean.redis).hit(Quota("user", 4, 60), str(ann_id)) == 10


async def test_bad_tokens_are_still_401_behind_the_throttle(clean: Container) -> None:
    now = int(time.time())
    claims = {"sub": str(uuid.uuid4()), "role": "admin", "iss": "shop", "iat": now}
    expired = jwt.encode({**claims, "exp": now - 60}, TEST_JWT_SECRET, algorithm="HS256")
    unsigned = jwt.encode({**claims, "exp": now + 60}, None, algorithm="none")
    async with http_client(_app(clean)) as client:
        for token in (expired, unsigned, "garbage"):
            response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, token


def test_a_remembered_principal_serves_only_the_token_it_was_verified_for() -> None:
    principal = Principal(user_id=uuid.uuid4(), role=Role.ADMIN)
    scope: dict[str, Any] = {}
    remember_principal(scope, "token-a", principal)  # type: ignore[arg-type]
    assert _remembered_principal(scope, "token-a") == principal  # type: ignore[arg-type]
    assert _remembered_principal(scope, "token-b") is None  # type: ignore[arg-type]

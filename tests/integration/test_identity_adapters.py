"""The identity adapters against the real PostgreSQL, and argon2 for real."""

from __future__ import annotations

import asyncio
import datetime
import time
import traceback
import uuid

import pytest
from sqlalchemy import select

from shop.adapters.db.tables import RefreshTokenRow
from shop.adapters.security import Argon2PasswordHasher
from shop.bootstrap import Container
from shop.domain.errors import Conflict, Unauthorized
from shop.domain.identity import services
from shop.domain.identity.model import RefreshTokenReused, Role, SignUp, User, refresh_digest
from tests.conftest import TEST_PASSWORD, make_user

TTL = datetime.timedelta(days=14)


def _user(email: str, role: Role = Role.CUSTOMER) -> User:
    return User(id=uuid.uuid4(), email=email, name="Ann", role=role, password_hash="h")


async def test_users_round_trip_and_save(clean: Container) -> None:
    user = _user("ann@example.com")
    async with clean.identity_uow() as uow:
        await uow.users.add(user)
        await uow.commit()
    async with clean.identity_uow() as uow:
        assert await uow.users.get(user.id) == user
        assert await uow.users.by_email("ann@example.com") == user
        assert await uow.users.by_email("bob@example.com") is None
        promoted = User(
            id=user.id,
            email=user.email,
            name="Ann B",
            role=Role.ADMIN,
            password_hash="h2",
            phone="+1 555",
            address="1 Main St",
        )
        await uow.users.save(promoted)
        await uow.commit()
    async with clean.identity_uow() as uow:
        assert await uow.users.get(user.id) == promoted


async def test_a_duplicate_email_is_a_conflict(clean: Container) -> None:
    async with clean.identity_uow() as uow:
        await uow.users.add(_user("ann@example.com"))
        await uow.commit()
    async with clean.identity_uow() as uow:
        with pytest.raises(Conflict):
            await uow.users.add(_user("ann@example.com"))


async def test_leaving_the_unit_of_work_without_commit_writes_nothing(clean: Container) -> None:
    user = _user("ann@example.com")
    async with clean.identity_uow() as uow:
        await uow.users.add(user)
    async with clean.identity_uow() as uow:
        assert await uow.users.get(user.id) is None


async def test_concurrent_sign_ups_with_one_email_create_one_account(clean: Container) -> None:
    async def attempt(email: str) -> object:
        cmd = SignUp(email=email, password=TEST_PASSWORD, name="Ann")
        return await services.sign_up(cmd, uow=clean.identity_uow(), hasher=clean.password_hasher)

    emails = ["ann@example.com", "Ann@Example.com", " ANN@example.com", "ann@EXAMPLE.com"]
    results = await asyncio.gather(*(attempt(e) for e in emails), return_exceptions=True)
    assert sum(isinstance(r, User) for r in results) == 1
    assert sum(isinstance(r, Conflict) for r in results) == len(emails) - 1


async def test_only_the_digest_of_a_refresh_token_is_stored(clean: Container) -> None:
    await make_user(clean, email="ann@example.com")
    pair = await services.log_in(
        "ann@example.com",
        TEST_PASSWORD,
        uow=clean.identity_uow(),
        hasher=clean.password_hasher,
        access_tokens=clean.access_tokens,
        refresh_ttl=TTL,
    )
    async with clean.sessionmaker() as session:
        rows = (await session.scalars(select(RefreshTokenRow))).all()
    assert [row.jti for row in rows] == [refresh_digest(pair.refresh_token)]
    assert pair.refresh_token not in repr([(r.jti, r.family) for r in rows])


async def test_two_racing_refreshes_with_one_token_spend_it_once_and_revoke_the_family(
    clean: Container,
) -> None:
    await make_user(clean, email="ann@example.com")
    pair = await services.log_in(
        "ann@example.com",
        TEST_PASSWORD,
        uow=clean.identity_uow(),
        hasher=clean.password_hasher,
        access_tokens=clean.access_tokens,
        refresh_ttl=TTL,
    )

    async def attempt() -> object:
        return await services.refresh(
            pair.refresh_token,
            uow=clean.identity_uow(),
            access_tokens=clean.access_tokens,
            refresh_ttl=TTL,
        )

    results = await asyncio.gather(*(attempt() for _ in range(5)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    losers = [r for r in results if r not in winners]
    assert all(isinstance(r, Unauthorized) for r in losers)
    assert any(isinstance(r, RefreshTokenReused) for r in losers)
    # The race itself is a reuse: the winner's new token died with the family.
    with pytest.raises(Unauthorized):
        await services.refresh(
            winners[0].refresh_token,  # type: ignore[attr-defined]
            uow=clean.identity_uow(),
            access_tokens=clean.access_tokens,
            refresh_ttl=TTL,
        )


async def test_argon2_hashes_verify_and_refuse() -> None:
    hasher = Argon2PasswordHasher(time_cost=1, memory_kib=8192)
    hashed = await hasher.hash("s3cret pass")
    assert hashed.startswith("$argon2id$")
    assert "s3cret pass" not in hashed
    assert await hasher.verify(hashed, "s3cret pass")
    assert not await hasher.verify(hashed, "s3cret pasS")
    assert not await hasher.verify("not-a-hash", "s3cret pass")
    assert not hasher.needs_rehash(hashed)
    assert Argon2PasswordHasher(time_cost=2, memory_kib=8192).needs_rehash(hashed)


async def test_argon2_wasted_time_matches_a_verification() -> None:
    hasher = Argon2PasswordHasher(time_cost=2, memory_kib=16384)
    hashed = await hasher.hash("s3cret pass")
    await hasher.waste_time("warm up")  # the first call also makes the dummy hash

    async def timed(call: object) -> float:
        started = time.perf_counter()
        await call  # type: ignore[misc]
        return time.perf_counter() - started

    verify = sorted([await timed(hasher.verify(hashed, "wrong pass")) for _ in range(5)])[2]
    wasted = sorted([await timed(hasher.waste_time("wrong pass")) for _ in range(5)])[2]
    assert 0.5 < wasted / verify < 2.0


async def test_hashing_does_not_block_the_event_loop() -> None:
    hasher = Argon2PasswordHasher(time_cost=3, memory_kib=65536)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    try:
        started = time.perf_counter()
        await hasher.hash("s3cret pass")
        elapsed = time.perf_counter() - started
    finally:
        task.cancel()
    assert ticks >= elapsed / 0.005 / 3, "the loop kept serving while argon2 ran"


async def test_database_errors_never_carry_a_password_hash(clean: Container) -> None:
    secret_hash = "$argon2id$v=19$m=8192,t=1,p=4$c2VjcmV0$do-not-log-me"
    broken = User(
        id=uuid.uuid4(),
        email="ann@example.com",
        name="x" * 500,
        role=Role.CUSTOMER,
        password_hash=secret_hash,
    )
    async with clean.identity_uow() as uow:
        with pytest.raises(Exception) as caught:
            await uow.users.add(broken)  # name too long for its column
    logged = "".join(traceback.format_exception(caught.value))  # what a log line would show
    assert "user_account" in logged
    assert secret_hash not in logged

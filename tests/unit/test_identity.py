"""Identity rules and use cases, on in-memory ports (no I/O)."""

from __future__ import annotations

import dataclasses
import datetime
import uuid

import pytest

from shop.domain.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from shop.domain.identity import services
from shop.domain.identity.model import (
    RefreshToken,
    RefreshTokenReused,
    Role,
    SignUp,
    TokenPair,
    check_password_policy,
    normalise_email,
    refresh_digest,
)
from tests.unit.identity_fakes import FakeAccessTokens, FakeHasher, FakeIdentityUnitOfWork

PASSWORD = "correct horse 7"
TTL = datetime.timedelta(days=14)
T0 = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC)


class Clock:
    def __init__(self, now: datetime.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
def uow() -> FakeIdentityUnitOfWork:
    return FakeIdentityUnitOfWork()


@pytest.fixture
def hasher() -> FakeHasher:
    return FakeHasher()


async def _sign_up(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher, email: str = "ann@example.com"
) -> uuid.UUID:
    user = await services.sign_up(
        SignUp(email=email, password=PASSWORD, name="Ann"), uow=uow, hasher=hasher
    )
    return user.id


async def _log_in(
    uow: FakeIdentityUnitOfWork,
    hasher: FakeHasher,
    email: str = "ann@example.com",
    password: str = PASSWORD,
    clock: Clock | None = None,
) -> TokenPair:
    return await services.log_in(
        email,
        password,
        uow=uow,
        hasher=hasher,
        access_tokens=FakeAccessTokens(),
        refresh_ttl=TTL,
        clock=clock or Clock(),
    )


async def _refresh(
    uow: FakeIdentityUnitOfWork, secret: str, clock: Clock | None = None
) -> TokenPair:
    return await services.refresh(
        secret, uow=uow, access_tokens=FakeAccessTokens(), refresh_ttl=TTL, clock=clock or Clock()
    )


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("  ann@example.com\t", "ann@example.com"),
        ("ａｎｎ@example.com", "ann@example.com"),  # full-width letters fold (NFKC)
    ],
)
def test_emails_are_normalised_to_one_spelling(raw: str, normalised: str) -> None:
    assert normalise_email(raw) == normalised


@pytest.mark.parametrize(
    "raw", ["", "ann", "ann@", "@example.com", "ann@localhost", "a n@example.com", "x" * 321]
)
def test_malformed_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_email(raw)


@pytest.mark.parametrize(
    "password", ["Ab1!", "abcdefgh", "ABCDEFGHIJ", "1234567890", "!!!!!!!!!!", "x" * 257]
)
def test_weak_passwords_are_refused_without_being_repeated(password: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_password_policy(password)
    assert password not in caught.value.message


@pytest.mark.parametrize("password", ["abcdefg1", "ABCDEFGh", "correct horse", "pässwörd!"])
def test_passwords_of_two_kinds_of_character_are_accepted(password: str) -> None:
    check_password_policy(password)


def test_secrets_never_show_in_reprs() -> None:
    assert "s3cret-pass" not in repr(SignUp(email="a@b.co", password="s3cret-pass", name="A"))
    pair = TokenPair(access_token="acc-secret", refresh_token="ref-secret", expires_in=900)
    assert "secret" not in repr(pair)


async def test_sign_up_stores_a_normalised_email_and_a_hash_not_the_password(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    user = await services.sign_up(
        SignUp(email=" Ann@Example.com ", password=PASSWORD, name=" Ann ", phone=" "),
        uow=uow,
        hasher=hasher,
    )
    stored = uow.committed.users[user.id]
    assert stored.email == "ann@example.com"
    assert stored.name == "Ann"
    assert stored.role is Role.CUSTOMER
    assert stored.phone is None
    assert PASSWORD not in stored.password_hash
    assert await hasher.verify(stored.password_hash, PASSWORD)


async def test_an_email_cannot_sign_up_twice_whatever_its_case(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    await _sign_up(uow, hasher, "ann@example.com")
    with pytest.raises(Conflict):
        await _sign_up(uow, hasher, "ANN@example.com")
    assert len(uow.committed.users) == 1


async def test_log_in_issues_an_access_token_and_a_stored_refresh_token(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    user_id = await _sign_up(uow, hasher)
    pair = await _log_in(uow, hasher, email="ANN@example.com")
    assert pair.access_token.startswith(f"access:{user_id}:customer")
    assert pair.expires_in == 900
    stored = uow.committed.tokens[refresh_digest(pair.refresh_token)]
    assert stored.user_id == user_id
    assert stored.expires_at == T0 + TTL
    assert pair.refresh_token not in uow.committed.tokens, "only the digest is stored"


async def test_unknown_email_and_wrong_password_fail_alike_after_the_same_work(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    await _sign_up(uow, hasher)
    with pytest.raises(Unauthorized) as wrong_password:
        await _log_in(uow, hasher, password="wrong password 1")
    assert hasher.wasted == 0
    with pytest.raises(Unauthorized) as unknown_email:
        await _log_in(uow, hasher, email="bob@example.com")
    assert hasher.wasted == 1, "a missing user must still cost one hash verification"
    with pytest.raises(Unauthorized) as malformed_email:
        await _log_in(uow, hasher, email="not an email")
    assert hasher.wasted == 2
    assert wrong_password.value.message == unknown_email.value.message
    assert unknown_email.value.message == malformed_email.value.message


async def test_log_in_upgrades_a_hash_made_with_weaker_settings(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    user_id = await _sign_up(uow, hasher)
    old = uow.committed.users[user_id]
    weak = "old$" + old.password_hash.split("$", 1)[1]
    uow.committed.users[user_id] = dataclasses.replace(old, password_hash=weak)
    await _log_in(uow, hasher)
    assert uow.committed.users[user_id].password_hash.startswith("fake$")


async def test_refresh_rotates_the_token_and_spends_the_old_one(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    await _sign_up(uow, hasher)
    first = await _log_in(uow, hasher)
    clock = Clock(T0 + datetime.timedelta(hours=1))
    second = await _refresh(uow, first.refresh_token, clock)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    old = uow.committed.tokens[refresh_digest(first.refresh_token)]
    new = uow.committed.tokens[refresh_digest(second.refresh_token)]
    assert old.used_at == clock.now
    assert new.family == old.family
    assert new.expires_at == clock.now + TTL
    third = await _refresh(uow, second.refresh_token, clock)
    assert third.refresh_token not in {first.refresh_token, second.refresh_token}


async def test_reusing_a_spent_token_revokes_the_whole_family(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    await _sign_up(uow, hasher)
    stolen = await _log_in(uow, hasher)
    victims_next = await _refresh(uow, stolen.refresh_token)
    other_device = await _log_in(uow, hasher)

    with pytest.raises(RefreshTokenReused):
        await _refresh(uow, stolen.refresh_token)
    with pytest.raises(Unauthorized, match="revoked"):
        await _refresh(uow, victims_next.refresh_token)
    # Another login is another family: it is not punished for this one's theft.
    await _refresh(uow, other_device.refresh_token)


async def test_a_spent_token_revokes_its_family_even_after_expiring(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    await _sign_up(uow, hasher)
    first = await _log_in(uow, hasher)
    second = await _refresh(uow, first.refresh_token)
    with pytest.raises(RefreshTokenReused):
        await _refresh(uow, first.refresh_token, Clock(T0 + 2 * TTL))
    assert uow.committed.tokens[refresh_digest(second.refresh_token)].revoked


async def test_an_expired_refresh_token_is_refused(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    await _sign_up(uow, hasher)
    pair = await _log_in(uow, hasher)
    with pytest.raises(Unauthorized, match="expired"):
        await _refresh(uow, pair.refresh_token, Clock(T0 + TTL))


async def test_an_unknown_refresh_token_is_refused(uow: FakeIdentityUnitOfWork) -> None:
    with pytest.raises(Unauthorized):
        await _refresh(uow, "made-up")


async def test_refresh_carries_the_role_the_user_has_now(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    user_id = await _sign_up(uow, hasher)
    pair = await _log_in(uow, hasher)
    # A role changed behind the use cases' back (an operator's SQL): the next access token
    # says so. (``create_admin`` revokes the sessions instead, tested below.)
    user = uow.committed.users[user_id]
    uow.committed.users[user_id] = dataclasses.replace(user, role=Role.ADMIN)
    refreshed = await _refresh(uow, pair.refresh_token)
    assert refreshed.access_token.startswith(f"access:{user_id}:admin")


async def test_log_out_revokes_the_family_and_is_idempotent(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    await _sign_up(uow, hasher)
    first = await _log_in(uow, hasher)
    second = await _refresh(uow, first.refresh_token)
    await services.log_out(second.refresh_token, uow=uow)
    await services.log_out(second.refresh_token, uow=uow)
    await services.log_out("never-issued", uow=uow)
    with pytest.raises(Unauthorized, match="revoked"):
        await _refresh(uow, second.refresh_token)


async def test_profile_of_a_missing_user_is_unauthorized(uow: FakeIdentityUnitOfWork) -> None:
    with pytest.raises(Unauthorized):
        await services.profile(uuid.uuid4(), uow=uow)


async def test_create_admin_is_idempotent_and_promotes_a_customer(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    admin, created = await services.create_admin(
        "Root@Example.com", "admin Passw0rd", name="", uow=uow, hasher=hasher
    )
    assert created
    assert admin.role is Role.ADMIN
    assert admin.name == "Administrator"
    again, created_again = await services.create_admin(
        "root@example.com", "admin Passw0rd", name="", uow=uow, hasher=hasher
    )
    assert not created_again
    assert again.id == admin.id
    assert len(uow.committed.users) == 1

    customer_id = await _sign_up(uow, hasher, "cara@example.com")
    promoted, created = await services.create_admin(
        "cara@example.com", "cara Admin 1", name="", uow=uow, hasher=hasher
    )
    assert not created
    assert promoted.id == customer_id
    assert uow.committed.users[customer_id].role is Role.ADMIN
    await _log_in(uow, hasher, email="cara@example.com", password="cara Admin 1")


async def test_create_admin_applies_the_password_policy(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    with pytest.raises(InvalidInput):
        await services.create_admin("root@example.com", "short", name="", uow=uow, hasher=hasher)
    assert not uow.committed.users


def test_a_refresh_token_is_checked_for_reuse_before_expiry() -> None:
    token, _ = RefreshToken.first_of_family(uuid.uuid4(), now=T0, ttl=TTL)
    spent = RefreshToken(token.digest, token.family, token.user_id, token.expires_at, used_at=T0)
    with pytest.raises(RefreshTokenReused):
        spent.check_spendable(T0 + 2 * TTL)


@pytest.mark.parametrize(
    "changes",
    [{"name": "x" * 201}, {"phone": "1" * 41}, {"name": "  "}],
)
async def test_profiles_that_do_not_fit_are_refused(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher, changes: dict[str, str]
) -> None:
    fields = {"email": "ann@example.com", "password": PASSWORD, "name": "Ann", **changes}
    with pytest.raises(InvalidInput):
        await services.sign_up(SignUp(**fields), uow=uow, hasher=hasher)
    with pytest.raises(InvalidInput):
        await services.create_admin(
            "root@example.com", PASSWORD, name="x" * 201, uow=uow, hasher=hasher
        )


async def test_a_password_change_revokes_every_session_of_the_account(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    user_id = await _sign_up(uow, hasher)
    phone, laptop = await _log_in(uow, hasher), await _log_in(uow, hasher)
    other_id = await _sign_up(uow, hasher, "bob@example.com")
    bob = await _log_in(uow, hasher, email="bob@example.com")

    await services.change_password(user_id, PASSWORD, "new Passw0rd 9", uow=uow, hasher=hasher)

    for session in (phone, laptop):
        with pytest.raises(Unauthorized):
            await _refresh(uow, session.refresh_token)
    await _refresh(uow, bob.refresh_token)  # another account's sessions are untouched
    assert other_id != user_id
    with pytest.raises(Unauthorized):
        await _log_in(uow, hasher)
    await _log_in(uow, hasher, password="new Passw0rd 9")


async def test_a_password_change_needs_the_current_password_and_the_policy(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    user_id = await _sign_up(uow, hasher)
    session = await _log_in(uow, hasher)
    with pytest.raises(Forbidden):
        await services.change_password(
            user_id, "wrong one 1", "new Passw0rd 9", uow=uow, hasher=hasher
        )
    with pytest.raises(InvalidInput):
        await services.change_password(user_id, PASSWORD, "short", uow=uow, hasher=hasher)
    with pytest.raises(Unauthorized):
        await services.change_password(
            uuid.uuid4(), PASSWORD, "new Passw0rd 9", uow=uow, hasher=hasher
        )
    await _refresh(uow, session.refresh_token)  # nothing was changed or revoked


async def test_promoting_or_resetting_an_account_revokes_its_sessions(
    uow: FakeIdentityUnitOfWork, hasher: FakeHasher
) -> None:
    await _sign_up(uow, hasher)
    stolen = await _log_in(uow, hasher)
    await services.create_admin(
        "ann@example.com", "admin Passw0rd", name="", uow=uow, hasher=hasher
    )
    with pytest.raises(Unauthorized):
        await _refresh(uow, stolen.refresh_token)

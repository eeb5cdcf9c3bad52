"""Identity use cases: sign up, log in, refresh, log out, read one's profile, bootstrap an admin.

Each takes its ports as arguments and holds the rule once; the HTTP controller and the CLI
only parse, call and render.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import replace

from shop.domain.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from shop.domain.identity.model import (
    RefreshToken,
    RefreshTokenReused,
    Role,
    SignUp,
    TokenPair,
    User,
    check_password_policy,
    clean_name,
    clean_phone,
    normalise_email,
    refresh_digest,
)
from shop.domain.identity.ports import AccessTokens, IdentityUnitOfWork, PasswordHasher

Clock = Callable[[], datetime.datetime]

ACCOUNT_GONE = "the account no longer exists; sign up or log in again"
# One message for "no such email" and "wrong password": which one it was is nobody's business.
BAD_CREDENTIALS = "wrong email or password"


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def sign_up(cmd: SignUp, *, uow: IdentityUnitOfWork, hasher: PasswordHasher) -> User:
    """Open a customer account. The email is normalised first, so case or spaces cannot
    create a second account for one mailbox; the unique index decides a race between two
    sign-ups with the same email (the loser gets ``Conflict``)."""
    email = normalise_email(cmd.email)
    check_password_policy(cmd.password)
    name, phone = clean_name(cmd.name), clean_phone(cmd.phone)
    address = (cmd.address or "").strip() or None
    user = User(
        id=uuid.uuid4(),
        email=email,
        name=name,
        role=Role.CUSTOMER,
        password_hash=await hasher.hash(cmd.password),
        phone=phone,
        address=address,
    )
    async with uow:
        await uow.users.add(user)
        await uow.commit()
    return user


async def _issue(
    user: User,
    token: RefreshToken,
    secret: str,
    *,
    uow: IdentityUnitOfWork,
    access_tokens: AccessTokens,
) -> TokenPair:
    await uow.refresh_tokens.add(token)
    await uow.commit()
    access, expires_in = access_tokens.issue(user.principal)
    return TokenPair(access_token=access, refresh_token=secret, expires_in=expires_in)


async def log_in(
    email: str,
    password: str,
    *,
    uow: IdentityUnitOfWork,
    hasher: PasswordHasher,
    access_tokens: AccessTokens,
    refresh_ttl: datetime.timedelta,
    clock: Clock = utc_now,
) -> TokenPair:
    """Exchange credentials for tokens, starting a new refresh-token family.

    Unknown email and wrong password raise the same ``Unauthorized`` after the same amount of
    hashing work, so neither the answer nor its timing tells whether an account exists.
    """
    try:
        normalised = normalise_email(email)
    except InvalidInput:
        normalised = None
    async with uow:
        user = await uow.users.by_email(normalised) if normalised else None
    # Hashing happens outside any transaction: a burst of logins must not hold database
    # connections that buyers need for tens of milliseconds of CPU work each.
    if user is None:
        await hasher.waste_time(password)
        raise Unauthorized(BAD_CREDENTIALS)
    if not await hasher.verify(user.password_hash, password):
        raise Unauthorized(BAD_CREDENTIALS)
    rehashed = None
    if hasher.needs_rehash(user.password_hash):
        rehashed = replace(user, password_hash=await hasher.hash(password))
    token, secret = RefreshToken.first_of_family(user.id, now=clock(), ttl=refresh_ttl)
    async with uow:
        if rehashed is not None:
            await uow.users.save(rehashed)
        return await _issue(user, token, secret, uow=uow, access_tokens=access_tokens)


async def refresh(
    secret: str,
    *,
    uow: IdentityUnitOfWork,
    access_tokens: AccessTokens,
    refresh_ttl: datetime.timedelta,
    clock: Clock = utc_now,
) -> TokenPair:
    """Spend a refresh token for a new pair; the old token is dead from now on.

    A token that was already spent revokes its whole family (committed before refusing), so a
    stolen token is worth at most one refresh, and only until the rightful owner's next one.
    The access token carries the user's current role, read now, not the one at login.
    """
    now = clock()
    async with uow:
        stored = await uow.refresh_tokens.get_for_update(refresh_digest(secret))
        if stored is None:
            raise Unauthorized("unknown refresh token: log in again")
        try:
            stored.check_spendable(now)
        except RefreshTokenReused:
            await uow.refresh_tokens.revoke_family(stored.family)
            await uow.commit()
            raise
        user = await uow.users.get(stored.user_id)
        if user is None:
            raise Unauthorized(ACCOUNT_GONE)
        await uow.refresh_tokens.mark_used(stored.digest, now)
        successor, new_secret = stored.successor(now=now, ttl=refresh_ttl)
        return await _issue(user, successor, new_secret, uow=uow, access_tokens=access_tokens)


async def log_out(secret: str, *, uow: IdentityUnitOfWork) -> None:
    """Revoke the family of the presented refresh token: every token of that login dies.

    Idempotent and silent: logging out twice, or with an unknown token, changes nothing and
    tells nothing. Access tokens already issued stay valid until they expire (minutes).
    """
    async with uow:
        stored = await uow.refresh_tokens.get_for_update(refresh_digest(secret))
        if stored is None or stored.revoked:
            return
        await uow.refresh_tokens.revoke_family(stored.family)
        await uow.commit()


async def profile(user_id: uuid.UUID, *, uow: IdentityUnitOfWork) -> User:
    async with uow:
        user = await uow.users.get(user_id)
    if user is None:
        raise Unauthorized(ACCOUNT_GONE)
    return user


async def change_password(
    user_id: uuid.UUID,
    current_password: str,
    new_password: str,
    *,
    uow: IdentityUnitOfWork,
    hasher: PasswordHasher,
) -> None:
    """Replace the password of a signed-in account, proving the current one first (a token
    left on a shared screen must not be enough to lock the owner out).

    Every refresh-token family of the account is revoked in the same transaction: whoever
    holds an old session, perhaps the reason for the change, cannot refresh it. Access tokens
    already issued stay valid until they expire (``SHOP_ACCESS_TOKEN_TTL``).
    """
    check_password_policy(new_password)
    async with uow:
        user = await uow.users.get(user_id)
    if user is None:
        raise Unauthorized(ACCOUNT_GONE)
    if not await hasher.verify(user.password_hash, current_password):
        raise Forbidden("the current password is wrong")
    new_hash = await hasher.hash(new_password)
    async with uow:
        await uow.users.save(replace(user, password_hash=new_hash))
        await uow.refresh_tokens.revoke_all_of(user.id)
        await uow.commit()


async def create_admin(
    email: str,
    password: str,
    *,
    name: str,
    uow: IdentityUnitOfWork,
    hasher: PasswordHasher,
) -> tuple[User, bool]:
    """Make ``email`` an admin whose password is ``password``; return (admin, created).

    Idempotent, for an operator bootstrapping the first admin: run twice, one admin remains;
    an existing customer with that email is promoted (and given this password, so that the
    operator knows how to log in afterwards). Concurrent runs are settled by the unique email.

    Promoting or resetting an existing account revokes all its refresh-token families: an
    old (possibly stolen) session must not refresh straight into admin tokens.
    """
    normalised = normalise_email(email)
    check_password_policy(password)
    name = clean_name(name or "Administrator")
    password_hash = await hasher.hash(password)
    async with uow:
        existing = await uow.users.by_email(normalised)
        if existing is not None:
            admin = replace(existing, role=Role.ADMIN, password_hash=password_hash)
            await uow.users.save(admin)
            await uow.refresh_tokens.revoke_all_of(admin.id)
            await uow.commit()
            return admin, False
        admin = User(
            id=uuid.uuid4(),
            email=normalised,
            name=name,
            role=Role.ADMIN,
            password_hash=password_hash,
        )
        try:
            await uow.users.add(admin)
        except Conflict:
            raise Conflict("another process created this account just now; run again") from None
        await uow.commit()
        return admin, True

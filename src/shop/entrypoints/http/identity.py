"""Identity endpoints: sign-up, login, refresh, logout, and the caller's profile.

Each handler parses, calls one use case and renders. Rules (email normalisation, password
policy, refresh rotation and reuse detection) live in ``shop.domain.identity.services``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from shop.bootstrap import Container
from shop.domain.identity import services
from shop.domain.identity.model import (
    MAX_EMAIL_LENGTH,
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Principal,
    SignUp,
    TokenPair,
    User,
)
from shop.entrypoints.http.bounds import NOT_BLANK
from shop.entrypoints.http.openapi import raises
from shop.entrypoints.http.throttle import SIGN_IN

# Generous caps that keep absurd payloads out before any rule or hash runs; the domain
# applies the real policy with messages a customer can act on.
Email = Annotated[str, msgspec.Meta(max_length=MAX_EMAIL_LENGTH, examples=["ann@example.com"])]
# A new account's email: plain ASCII addresses, so that what the document allows is exactly
# what the domain's normalisation accepts (logging in takes any string: a miss is a 401).
NewEmail = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_EMAIL_LENGTH,
        pattern=r"^ *[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
        r"[A-Za-z0-9.-]*[A-Za-z0-9-]\.+[A-Za-z0-9-][A-Za-z0-9.-]* *$",
        examples=["ann@example.com"],
    ),
]

Password = Annotated[str, msgspec.Meta(max_length=1024)]
NewPassword = Annotated[
    str,
    msgspec.Meta(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description="at least 8 characters of at least two kinds (lower, upper, digit, symbol)",
    ),
]
# RFC 6749 §5.1: responses carrying tokens or account data must not be cached.
NO_STORE = CacheControlHeader(no_store=True)
RefreshSecret = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class SignUpIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: NewEmail
    password: NewPassword
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NOT_BLANK)]
    phone: Annotated[str, msgspec.Meta(max_length=40)] | None = None
    address: Annotated[str, msgspec.Meta(max_length=2000)] | None = None

    def to_command(self) -> SignUp:
        return SignUp(
            email=self.email,
            password=self.password,
            name=self.name,
            phone=self.phone,
            address=self.address,
        )


class LogInIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: Email
    password: Password


class RefreshIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: RefreshSecret


class PasswordChangeIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    current_password: Password
    new_password: NewPassword


class TokenOut(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: Literal["bearer"] = "bearer"

    @classmethod
    def from_domain(cls, pair: TokenPair) -> TokenOut:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
        )


class UserOut(msgspec.Struct, frozen=True):
    id: uuid.UUID
    email: str
    name: str
    role: str
    phone: str | None
    address: str | None

    @classmethod
    def from_domain(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role.value,
            phone=user.phone,
            address=user.address,
        )


class AuthController(Controller):
    """Public by nature: these are how a caller gets a token in the first place."""

    path = "/api/auth"
    tags = ["auth"]

    @post(
        "/signup",
        operation_id="SignUp",
        responses=raises(409),
        cache_control=NO_STORE,
        exclude_from_auth=True,
        opt=SIGN_IN,
        status_code=HTTP_201_CREATED,
        summary="Open a customer account",
    )
    async def sign_up(
        self, data: JSONBody[SignUpIn], container: NamedDependency[Container]
    ) -> UserOut:
        user = await services.sign_up(
            data.to_command(), uow=container.identity_uow(), hasher=container.password_hasher
        )
        return UserOut.from_domain(user)

    @post(
        "/login",
        operation_id="LogIn",
        responses=raises(401),
        cache_control=NO_STORE,
        exclude_from_auth=True,
        opt=SIGN_IN,
        status_code=200,
    )
    async def log_in(
        self, data: JSONBody[LogInIn], container: NamedDependency[Container]
    ) -> TokenOut:
        pair = await services.log_in(
            data.email,
            data.password,
            uow=container.identity_uow(),
            hasher=container.password_hasher,
            access_tokens=container.access_tokens,
            refresh_ttl=container.refresh_ttl,
        )
        return TokenOut.from_domain(pair)

    @post(
        "/refresh",
        operation_id="RefreshTokens",
        responses=raises(401),
        cache_control=NO_STORE,
        exclude_from_auth=True,
        status_code=200,
    )
    async def refresh(
        self, data: JSONBody[RefreshIn], container: NamedDependency[Container]
    ) -> TokenOut:
        pair = await services.refresh(
            data.refresh_token,
            uow=container.identity_uow(),
            access_tokens=container.access_tokens,
            refresh_ttl=container.refresh_ttl,
        )
        return TokenOut.from_domain(pair)

    @post(
        "/logout",
        operation_id="LogOut",
        exclude_from_auth=True,
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke the refresh token's whole login (works with an expired access token)",
    )
    async def log_out(
        self, data: JSONBody[RefreshIn], container: NamedDependency[Container]
    ) -> None:
        await services.log_out(data.refresh_token, uow=container.identity_uow())


@get("/api/me", operation_id="GetMe", tags=["auth"], cache_control=NO_STORE)
async def get_me(
    principal: NamedDependency[Principal], container: NamedDependency[Container]
) -> UserOut:
    user = await services.profile(principal.user_id, uow=container.identity_uow())
    return UserOut.from_domain(user)


@post(
    "/api/me/password",
    operation_id="ChangePassword",
    responses=raises(403),
    tags=["auth"],
    status_code=HTTP_204_NO_CONTENT,
    opt=SIGN_IN,
    cache_control=NO_STORE,
    summary="Change my password; every refresh token of the account is revoked",
    description="403 when current_password is wrong. Access tokens already issued stay "
    "valid until they expire (SHOP_ACCESS_TOKEN_TTL).",
)
async def change_password(
    data: JSONBody[PasswordChangeIn],
    principal: NamedDependency[Principal],
    container: NamedDependency[Container],
) -> None:
    await services.change_password(
        principal.user_id,
        data.current_password,
        data.new_password,
        uow=container.identity_uow(),
        hasher=container.password_hasher,
    )

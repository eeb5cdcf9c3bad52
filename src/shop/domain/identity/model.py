"""Who is asking: users, their roles, and the principal a request acts as."""

from __future__ import annotations

import datetime
import hashlib
import secrets
import unicodedata
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from shop.domain.errors import InvalidInput, Unauthorized

MIN_PASSWORD_LENGTH = 8
# Long enough for any passphrase, short enough that hashing it cannot be used to burn CPU.
MAX_PASSWORD_LENGTH = 256
MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 200
MAX_PHONE_LENGTH = 40


class Role(StrEnum):
    CUSTOMER = "customer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, taken from a verified access token and nothing else.

    (The seed trusted an ``X-Claim-UserId`` header that any client could forge; here the id
    only ever comes out of a signature we checked.)
    """

    user_id: uuid.UUID
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def normalise_email(raw: str) -> str:
    """One spelling per mailbox, so ``Ann@Example.com `` cannot open a second account.

    The whole address is lower-cased: the local part is case-sensitive in theory, but no mail
    provider a customer uses treats it so, and two accounts differing only by case would be a
    support nightmare. NFKC folds look-alike Unicode forms into one.
    """
    email = unicodedata.normalize("NFKC", raw).strip().lower()
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain.strip(".")
        or len(email) > MAX_EMAIL_LENGTH
        or len(local) > 64
        or any(ch.isspace() for ch in email)
    ):
        raise InvalidInput("email must be an address like name@example.com")
    return email


def _character_class(ch: str) -> str:
    if ch.islower():
        return "lower"
    if ch.isupper():
        return "upper"
    return "digit" if ch.isdigit() else "other"


def check_password_policy(password: str) -> None:
    """At least 8 characters from at least two classes (lower, upper, digit, other).

    The message never repeats the password: error bodies end up in logs and screenshots.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at most {MAX_PASSWORD_LENGTH} characters")
    classes = {_character_class(ch) for ch in password}
    if len(classes) < 2:
        raise InvalidInput(
            "password must mix at least two kinds of characters "
            "(lower case, upper case, digits, symbols)"
        )


def clean_name(raw: str) -> str:
    name = raw.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"name must have 1 to {MAX_NAME_LENGTH} characters")
    return name


def clean_phone(raw: str | None) -> str | None:
    phone = (raw or "").strip()
    if len(phone) > MAX_PHONE_LENGTH:
        raise InvalidInput(f"phone must have at most {MAX_PHONE_LENGTH} characters")
    return phone or None


@dataclass(frozen=True, slots=True)
class User:
    """A customer or an admin. ``password_hash`` never leaves the identity module's adapters
    and use cases (it is excluded from ``repr`` so that no log line can carry it)."""

    id: uuid.UUID
    email: str
    name: str
    role: Role
    password_hash: str = field(repr=False)
    phone: str | None = None
    address: str | None = None

    @property
    def principal(self) -> Principal:
        return Principal(user_id=self.id, role=self.role)


@dataclass(frozen=True, slots=True)
class SignUp:
    """A sign-up request as the customer typed it (the use case normalises and checks it)."""

    email: str
    password: str = field(repr=False)
    name: str
    phone: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a login or a refresh hands back: a short-lived access token, a refresh token."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int


def new_refresh_secret() -> str:
    """256 random bits: unguessable, so a fast digest is enough to store it safely."""
    return secrets.token_urlsafe(32)


def refresh_digest(secret: str) -> str:
    """What the database keeps instead of the token: a leaked table grants no session."""
    return hashlib.sha256(secret.encode()).hexdigest()


class RefreshTokenReused(Unauthorized):
    """A refresh token was presented a second time: someone copied it. The whole family
    (every token descending from that login) is revoked before this is raised."""


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """One link in a login's chain of refresh tokens, as stored (only the digest).

    Each refresh spends the presented token and issues the next one in the same family. A
    spent token coming back means two parties hold the chain: the rule below refuses it and
    the use case revokes the family, so the thief and the victim are both logged out and the
    victim's next login starts a chain the thief does not have.
    """

    digest: str
    family: uuid.UUID
    user_id: uuid.UUID
    expires_at: datetime.datetime
    used_at: datetime.datetime | None = None
    revoked: bool = False

    @classmethod
    def first_of_family(
        cls, user_id: uuid.UUID, *, now: datetime.datetime, ttl: datetime.timedelta
    ) -> tuple[RefreshToken, str]:
        secret = new_refresh_secret()
        token = cls(refresh_digest(secret), uuid.uuid4(), user_id, expires_at=now + ttl)
        return token, secret

    def successor(
        self, *, now: datetime.datetime, ttl: datetime.timedelta
    ) -> tuple[RefreshToken, str]:
        secret = new_refresh_secret()
        return RefreshToken(refresh_digest(secret), self.family, self.user_id, now + ttl), secret

    def check_spendable(self, now: datetime.datetime) -> None:
        """Raise unless this token may be exchanged now. Reuse is checked first: an attacker
        replaying an old, expired token must still get the family revoked."""
        if self.revoked:
            raise Unauthorized("refresh token revoked: log in again")
        if self.used_at is not None:
            raise RefreshTokenReused("refresh token already used: log in again")
        if self.expires_at <= now:
            raise Unauthorized("refresh token expired: log in again")

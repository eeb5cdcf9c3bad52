"""Who is asking: users, their roles, and the principal a request acts as."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum


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

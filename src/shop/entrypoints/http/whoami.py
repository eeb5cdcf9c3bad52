"""``GET /api/auth/whoami``: the caller as the access token states it, touching no storage.

Useful to clients checking a token, and the benchmark's ceiling: the cost of auth plus the
framework, against which a purchase's extra work is measured.
"""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency

from shop.domain.identity.model import Principal


@get("/api/auth/whoami", operation_id="WhoAmI", tags=["identity"], cache=False)
async def whoami(principal: NamedDependency[Principal]) -> dict[str, str]:
    return {"user_id": str(principal.user_id), "role": principal.role.value}

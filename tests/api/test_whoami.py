"""``GET /api/auth/whoami``: the caller as the token states it (the benchmark's ceiling)."""

from __future__ import annotations

import uuid

import httpx

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from tests.conftest import bearer


async def test_whoami_names_the_token_holder(client: httpx.AsyncClient, clean: Container) -> None:
    user_id = uuid.uuid4()
    response = await client.get("/api/auth/whoami", headers=bearer(clean, user_id=user_id))
    assert response.status_code == 200
    assert response.json() == {"user_id": str(user_id), "role": Role.CUSTOMER.value}


async def test_whoami_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/auth/whoami")
    assert response.status_code == 401

"""The authentication contract every protected route relies on: 401 without a valid bearer
token, 403 for the wrong role, and the principal coming only from the verified token."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from litestar import get
from litestar.di import NamedDependency

from shop.bootstrap import Container
from shop.domain.identity.model import Principal, Role
from shop.entrypoints.http.app import create_app
from shop.entrypoints.http.auth import requires_admin
from tests.conftest import TEST_JWT_SECRET, bearer, http_client


@get("/whoami", operation_id="ContractWhoAmI")
async def whoami(principal: NamedDependency[Principal]) -> dict[str, Any]:
    return {"user_id": str(principal.user_id), "role": principal.role.value}


@get("/api/admin/ping", operation_id="AdminPing", guards=[requires_admin])
async def admin_ping() -> dict[str, str]:
    return {"pong": "admin"}


@pytest.fixture
async def api(clean: Container) -> Any:
    async with http_client(create_app(clean, extra_route_handlers=[whoami, admin_ping])) as c:
        yield c


async def test_a_valid_token_names_the_caller(api: httpx.AsyncClient, clean: Container) -> None:
    user_id = uuid.uuid4()
    response = await api.get("/whoami", headers=bearer(clean, user_id=user_id))
    assert response.status_code == 200
    assert response.json() == {"user_id": str(user_id), "role": "customer"}


async def test_no_token_is_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/whoami")
    assert response.status_code == 401
    assert response.json()["status_code"] == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_forged_user_header_is_ignored(api: httpx.AsyncClient) -> None:
    response = await api.get("/whoami", headers={"X-Claim-UserId": str(uuid.uuid4())})
    assert response.status_code == 401


def _token(claims: dict[str, Any], key: str | None = TEST_JWT_SECRET, alg: str = "HS256") -> str:
    base = {"sub": str(uuid.uuid4()), "role": "admin", "iss": "shop", "iat": int(time.time())}
    return jwt.encode({**base, **claims}, key if alg != "none" else None, algorithm=alg)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(_token({"exp": int(time.time()) - 60}), id="expired"),
        pytest.param(
            _token({"exp": int(time.time()) + 60}, key="another-secret-" * 3), id="bad-signature"
        ),
        pytest.param(_token({"exp": int(time.time()) + 60}, alg="none"), id="alg-none"),
        pytest.param(_token({}), id="no-exp"),
        pytest.param("not.a.jwt", id="garbage"),
    ],
)
async def test_invalid_tokens_are_401(api: httpx.AsyncClient, token: str) -> None:
    response = await api.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_tampered_token_is_401(api: httpx.AsyncClient, clean: Container) -> None:
    token = bearer(clean)["Authorization"].removeprefix("Bearer ")
    header, _payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["role"] = "admin"
    forged_payload = jwt.encode(claims, "x" * 32, algorithm="HS256").split(".")[1]
    response = await api.get(
        "/whoami", headers={"Authorization": f"Bearer {header}.{forged_payload}.{signature}"}
    )
    assert response.status_code == 401


async def test_admin_route_is_403_for_a_customer(api: httpx.AsyncClient, clean: Container) -> None:
    response = await api.get("/api/admin/ping", headers=bearer(clean, role=Role.CUSTOMER))
    assert response.status_code == 403
    assert response.json()["status_code"] == 403


async def test_admin_route_serves_an_admin(api: httpx.AsyncClient, clean: Container) -> None:
    response = await api.get("/api/admin/ping", headers=bearer(clean, role=Role.ADMIN))
    assert response.status_code == 200


async def test_admin_route_is_401_without_a_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/admin/ping")
    assert response.status_code == 401


async def test_public_routes_need_no_token(api: httpx.AsyncClient) -> None:
    for path in ("/health", "/ready", "/docs", "/schema/openapi.json"):
        assert (await api.get(path)).status_code == 200, path

"""The identity API (DESIGN §6) end to end: real app, real PostgreSQL, real argon2."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from litestar import get

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from shop.entrypoints.http.app import create_app
from shop.entrypoints.http.auth import requires_admin
from tests.conftest import TEST_JWT_SECRET, TEST_PASSWORD, bearer, http_client, make_user

PASSWORD = "correct horse 7"
SIGNUP = {"email": "Ann@Example.com", "password": PASSWORD, "name": "Ann"}


async def _sign_up(client: httpx.AsyncClient, **changes: Any) -> httpx.Response:
    return await client.post("/api/auth/signup", json={**SIGNUP, **changes})


async def _log_in(
    client: httpx.AsyncClient, email: str = "ann@example.com", password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def _tokens(client: httpx.AsyncClient) -> dict[str, Any]:
    assert (await _sign_up(client)).status_code == 201
    response = await _log_in(client)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_sign_up_log_in_and_read_my_profile(client: httpx.AsyncClient) -> None:
    signed_up = await _sign_up(client, phone="+81 3 1234", address="1-2-3 Shibuya")
    assert signed_up.status_code == 201
    profile = signed_up.json()
    assert profile["email"] == "ann@example.com"
    assert profile["role"] == "customer"
    assert set(profile) == {"id", "email", "name", "role", "phone", "address"}

    login = await _log_in(client, email="  ANN@example.com")
    assert login.status_code == 200
    tokens = login.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    claims = jwt.decode(tokens["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == profile["id"]
    assert claims["role"] == "customer"
    assert claims["exp"] - claims["iat"] == 900

    me = await client.get("/api/me", headers=_bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json() == profile


async def test_responses_never_carry_the_password_or_its_hash(
    client: httpx.AsyncClient, clean: Container
) -> None:
    signed_up = await _sign_up(client)
    tokens = (await _log_in(client)).json()
    me = await client.get("/api/me", headers=_bearer(tokens["access_token"]))
    async with clean.identity_uow() as uow:
        user = await uow.users.by_email("ann@example.com")
    assert user is not None
    for response in (signed_up, me):
        assert PASSWORD not in response.text
        assert user.password_hash not in response.text
        assert "argon2" not in response.text
    weak = await _sign_up(client, email="bob@example.com", password="abcdefghij")
    assert weak.status_code == 422
    assert "abcdefghij" not in weak.text


async def test_a_taken_email_is_409_whatever_its_spelling(client: httpx.AsyncClient) -> None:
    assert (await _sign_up(client)).status_code == 201
    again = await _sign_up(client, email=" ann@EXAMPLE.com ")
    assert again.status_code == 409
    assert again.json() == {
        "status_code": 409,
        "detail": "an account with this email already exists",
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"password": "short1"}, "password"),
        ({"password": "alllowercase"}, "password"),
        ({"email": "not-an-email"}, "email"),
        ({"name": "   "}, "name"),
    ],
)
async def test_rule_breaking_sign_ups_are_422_saying_why(
    client: httpx.AsyncClient, changes: dict[str, str], field: str
) -> None:
    response = await _sign_up(client, **changes)
    assert response.status_code == 422
    assert response.json()["status_code"] == 422
    assert field in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"email": "ann@example.com", "password": PASSWORD}, "name"),
        ({"password": PASSWORD, "name": "Ann"}, "email"),
        ({**SIGNUP, "password": 12345678}, "password"),
        ({**SIGNUP, "phone": ["+1"]}, "phone"),
        ({**SIGNUP, "name": ""}, "name"),
        ({**SIGNUP, "email": "a" * 400 + "@example.com"}, "email"),
    ],
)
async def test_missing_or_mistyped_fields_are_422_pointing_at_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], pointer: str
) -> None:
    response = await client.post("/api/auth/signup", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    payload = response.json()
    assert payload["status_code"] == 422
    assert pointer in response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"email=ann@example.com&password=x", "application/json"),
        (b"{not json", "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"just text", "text/plain"),
    ],
)
async def test_a_body_that_is_not_json_is_400(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/api/auth/login", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == 400
    assert response.json()["status_code"] == 400
    assert response.json()["detail"]


async def test_a_json_body_of_the_wrong_shape_is_422(client: httpx.AsyncClient) -> None:
    wrong_shapes: tuple[object, ...] = ([], "ann", 42, None)
    for body in wrong_shapes:
        response = await client.post("/api/auth/login", json=body)
        assert response.status_code == 422, body
        assert response.json()["status_code"] == 422


async def test_a_10_mb_body_is_413_before_anything_reads_it(client: httpx.AsyncClient) -> None:
    big = b'{"email": "ann@example.com", "password": "' + b"x" * 10_000_000 + b'"}'
    response = await client.post(
        "/api/auth/signup", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["status_code"] == 413


async def test_wrong_password_and_unknown_email_get_the_same_401(
    client: httpx.AsyncClient,
) -> None:
    await _sign_up(client)
    wrong_password = await _log_in(client, password="wrong Passw0rd")
    unknown_email = await _log_in(client, email="nobody@example.com")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["detail"] == "wrong email or password"


async def test_wrong_password_and_unknown_email_take_about_the_same_time(
    client: httpx.AsyncClient,
) -> None:
    await _sign_up(client)
    await _log_in(client, email="warm-up@example.com")  # first call makes the dummy hash

    async def timed(email: str) -> float:
        started = time.perf_counter()
        response = await _log_in(client, email=email, password="wrong Passw0rd")
        assert response.status_code == 401
        return time.perf_counter() - started

    known: list[float] = []
    unknown: list[float] = []
    for _ in range(11):  # interleaved, so that drift in machine load hits both alike
        known.append(await timed("ann@example.com"))
        unknown.append(await timed("nobody@example.com"))
    ratio = sorted(unknown)[5] / sorted(known)[5]
    # Without the dummy verification an unknown email answers in a fraction of the time.
    assert 0.6 < ratio < 2.0, (sorted(known), sorted(unknown))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(
            jwt.encode(
                {"sub": str(uuid.uuid4()), "role": "customer", "iss": "shop", "iat": 1, "exp": 2},
                TEST_JWT_SECRET,
                algorithm="HS256",
            ),
            id="expired",
        ),
        pytest.param(
            jwt.encode(
                {
                    "sub": str(uuid.uuid4()),
                    "role": "admin",
                    "iss": "shop",
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 600,
                },
                None,
                algorithm="none",
            ),
            id="alg-none",
        ),
        pytest.param("garbage", id="garbage"),
    ],
)
async def test_me_refuses_bad_tokens(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get("/api/me", headers=_bearer(token))
    assert response.status_code == 401
    assert response.json()["status_code"] == 401


async def test_me_refuses_a_tampered_token(client: httpx.AsyncClient) -> None:
    tokens = await _tokens(client)
    header, _payload, signature = tokens["access_token"].split(".")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    forged = jwt.encode({**claims, "role": "admin"}, "k" * 32, algorithm="HS256").split(".")[1]
    response = await client.get("/api/me", headers=_bearer(f"{header}.{forged}.{signature}"))
    assert response.status_code == 401


async def test_me_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_refresh_rotates_and_the_old_token_is_spent(client: httpx.AsyncClient) -> None:
    first = await _tokens(client)
    response = await client.post(
        "/api/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["token_type"] == "bearer"
    me = await client.get("/api/me", headers=_bearer(second["access_token"]))
    assert me.status_code == 200

    third = await client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200


async def test_reusing_a_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient,
) -> None:
    stolen = (await _tokens(client))["refresh_token"]
    rightful = await client.post("/api/auth/refresh", json={"refresh_token": stolen})
    assert rightful.status_code == 200
    other_device = (await _log_in(client)).json()["refresh_token"]

    replay = await client.post("/api/auth/refresh", json={"refresh_token": stolen})
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]
    after = await client.post(
        "/api/auth/refresh", json={"refresh_token": rightful.json()["refresh_token"]}
    )
    assert after.status_code == 401
    assert "revoked" in after.json()["detail"]
    unaffected = await client.post("/api/auth/refresh", json={"refresh_token": other_device})
    assert unaffected.status_code == 200


async def test_an_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/refresh", json={"refresh_token": "made-up"})
    assert response.status_code == 401


async def test_logout_revokes_the_family_and_is_idempotent(client: httpx.AsyncClient) -> None:
    first = await _tokens(client)
    second = (
        await client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    for _ in range(2):
        response = await client.post(
            "/api/auth/logout", json={"refresh_token": second["refresh_token"]}
        )
        assert response.status_code == 204
        assert response.content == b""
    refused = await client.post(
        "/api/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert refused.status_code == 401
    unknown = await client.post("/api/auth/logout", json={"refresh_token": "never-issued"})
    assert unknown.status_code == 204


async def test_me_of_a_deleted_user_is_401(client: httpx.AsyncClient, clean: Container) -> None:
    response = await client.get("/api/me", headers=bearer(clean, user_id=uuid.uuid4()))
    assert response.status_code == 401
    assert "no longer exists" in response.json()["detail"]


@get("/api/admin/identity-probe", operation_id="IdentityAdminProbe", guards=[requires_admin])
async def admin_probe() -> dict[str, str]:
    return {"ok": "admin"}


async def test_an_admin_route_is_403_for_a_logged_in_customer_and_200_for_an_admin(
    clean: Container,
) -> None:
    await make_user(clean, email="cara@example.com")
    await make_user(clean, Role.ADMIN, email="root@example.com")
    async with http_client(create_app(clean, extra_route_handlers=[admin_probe])) as client:
        customer = (await _log_in(client, "cara@example.com", TEST_PASSWORD)).json()
        admin = (await _log_in(client, "root@example.com", TEST_PASSWORD)).json()
        refused = await client.get(
            "/api/admin/identity-probe", headers=_bearer(customer["access_token"])
        )
        assert refused.status_code == 403
        assert refused.json()["status_code"] == 403
        allowed = await client.get(
            "/api/admin/identity-probe", headers=_bearer(admin["access_token"])
        )
        assert allowed.status_code == 200


async def test_make_user_gives_a_real_user_with_working_headers(
    client: httpx.AsyncClient, clean: Container
) -> None:
    user_id, headers = await make_user(clean)
    me = await client.get("/api/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["id"] == str(user_id)


async def test_every_identity_route_is_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    operations = {
        op["operationId"]
        for path in (
            "/api/auth/signup",
            "/api/auth/login",
            "/api/auth/refresh",
            "/api/auth/logout",
            "/api/me",
        )
        for op in paths[path].values()
    }
    assert operations == {"SignUp", "LogIn", "RefreshTokens", "LogOut", "GetMe"}

"""``shop users create-admin`` run as an operator would, against the test servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import func, select

from shop.adapters.db.tables import UserRow
from shop.bootstrap import Container
from shop.domain.identity.model import Role
from shop.entrypoints.cli import main
from shop.entrypoints.http.app import create_app
from tests.conftest import TEST_JWT_SECRET, http_client, make_user

ADMIN_PASSWORD = "Admin passw0rd"


async def _invoke(
    container: Container, tmp_path: Path, *args: str, password: str | None, stdin: str = ""
) -> Result:
    env = {
        "SHOP_DATABASE_URL": container.settings.database_url,
        "SHOP_REDIS_URL": container.settings.redis_url,
        "SHOP_JWT_SECRET": TEST_JWT_SECRET,
        "SHOP_DATA_DIR": str(tmp_path),
        "SHOP_PASSWORD_HASH_TIME_COST": "1",
        "SHOP_PASSWORD_HASH_MEMORY_KIB": "8192",
        "SHOP_LOG_LEVEL": "WARNING",
        "SHOP_ADMIN_PASSWORD": password,
    }
    # The command runs its own event loop (asyncio.run), so it gets a thread of its own.
    return await asyncio.to_thread(
        CliRunner().invoke, main, ["users", "create-admin", *args], env=env, input=stdin
    )


async def _accounts(container: Container, email: str) -> list[tuple[str, str]]:
    async with container.sessionmaker() as session:
        rows = await session.execute(
            select(UserRow.email, UserRow.role).where(func.lower(UserRow.email) == email)
        )
    return [(row.email, row.role) for row in rows]


async def _login_status(container: Container, email: str, password: str) -> int:
    async with http_client(create_app(container)) as client:
        response = await client.post("/api/auth/login", json={"email": email, "password": password})
    return response.status_code


async def test_create_admin_is_idempotent(clean: Container, tmp_path: Path) -> None:
    first = await _invoke(clean, tmp_path, "Root@Example.com", password=ADMIN_PASSWORD)
    assert first.exit_code == 0, first.output
    assert "created admin root@example.com" in first.output
    second = await _invoke(clean, tmp_path, "root@example.com", password=ADMIN_PASSWORD)
    assert second.exit_code == 0, second.output
    assert "updated admin root@example.com" in second.output
    assert await _accounts(clean, "root@example.com") == [("root@example.com", "admin")]
    assert await _login_status(clean, "root@example.com", ADMIN_PASSWORD) == 200
    assert ADMIN_PASSWORD not in first.output + second.output


async def test_create_admin_promotes_an_existing_customer(clean: Container, tmp_path: Path) -> None:
    await make_user(clean, Role.CUSTOMER, email="cara@example.com")
    result = await _invoke(clean, tmp_path, "cara@example.com", password=ADMIN_PASSWORD)
    assert result.exit_code == 0, result.output
    assert await _accounts(clean, "cara@example.com") == [("cara@example.com", "admin")]
    assert await _login_status(clean, "cara@example.com", ADMIN_PASSWORD) == 200


async def test_create_admin_prompts_for_the_password_when_unset(
    clean: Container, tmp_path: Path
) -> None:
    typed = f"{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n"
    result = await _invoke(clean, tmp_path, "root@example.com", password=None, stdin=typed)
    assert result.exit_code == 0, result.output
    assert ADMIN_PASSWORD not in result.output, "the prompt must not echo the password"
    assert await _login_status(clean, "root@example.com", ADMIN_PASSWORD) == 200


async def test_create_admin_refuses_a_weak_password(clean: Container, tmp_path: Path) -> None:
    result = await _invoke(clean, tmp_path, "root@example.com", password="password")
    assert result.exit_code != 0
    assert "password must" in result.output
    assert await _accounts(clean, "root@example.com") == []

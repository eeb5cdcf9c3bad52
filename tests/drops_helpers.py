"""Shared helpers of the drops tests: announce a drop over HTTP, and move its start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from shop.bootstrap import Container
from shop.domain.drops.services import get_drop


def drop_body(option_ids: list[int], **rules: Any) -> dict[str, Any]:
    starts = datetime.now(UTC) + timedelta(hours=1)
    base = {"name": "Sneaker drop", "option_ids": option_ids, "starts_at": starts.isoformat()}
    return base | {k: v.isoformat() if isinstance(v, datetime) else v for k, v in rules.items()}


async def announce(
    client: httpx.AsyncClient, admin: dict[str, str], option_ids: list[int], **rules: Any
) -> dict[str, Any]:
    answer = await client.post(
        "/api/admin/drops", json=drop_body(option_ids, **rules), headers=admin
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def move_start(container: Container, drop_id: int, starts_at: datetime) -> None:
    """What time does to a drop: its start moved (bypassing the 'in the future' rule), then
    republished to the waiting room as the app does on every change."""
    async with container.engine.begin() as conn:
        await conn.execute(
            text("UPDATE sale_drop SET starts_at = :at WHERE id = :id"),
            {"at": starts_at, "id": drop_id},
        )
    await container.room.publish(await get_drop(drop_id, drops=container.drops))


async def start_now(container: Container, drop_id: int) -> None:
    await move_start(container, drop_id, datetime.now(UTC) - timedelta(seconds=1))

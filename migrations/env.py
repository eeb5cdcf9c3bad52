"""Alembic environment, driven by advanced-alchemy's AlembicCommands (see shop.adapters.db.migrations).

Every revision runs in one transaction: PostgreSQL has transactional DDL, so a failed
migration leaves the schema exactly as it was.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal, cast

from advanced_alchemy.types import DateTimeUTC
from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import AsyncEngine, async_engine_from_config

from shop.adapters.db.tables import metadata

if TYPE_CHECKING:
    from advanced_alchemy.alembic.commands import AlembicCommandConfig
    from sqlalchemy.engine import Connection

config = cast("AlembicCommandConfig", context.config)


def render_item(kind: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render advanced-alchemy's DateTimeUTC as the plain timestamptz it is in PostgreSQL."""
    if kind == "type" and isinstance(obj, DateTimeUTC):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=config.db_url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
        render_item=render_item,
        version_table=config.version_table_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_item=render_item,
        version_table=config.version_table_name,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    connectable = cast(
        "AsyncEngine",
        config.engine
        or async_engine_from_config(
            {"sqlalchemy.url": config.db_url},
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        ),
    )
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())

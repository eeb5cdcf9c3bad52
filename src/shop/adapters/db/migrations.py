"""Schema migrations: Alembic revisions in ``migrations/`` run through advanced-alchemy.

Alembic's env.py drives its own event loop, so these helpers are synchronous; async callers
(tests) run them in a thread.
"""

from __future__ import annotations

import io
from pathlib import Path

from advanced_alchemy.alembic.commands import AlembicCommands
from advanced_alchemy.config import AlembicAsyncConfig, EngineConfig, SQLAlchemyAsyncConfig
from sqlalchemy.pool import NullPool

from shop.adapters.db.engine import async_url

VERSION_TABLE = "alembic_version"


def script_location() -> Path:
    """``migrations/`` of a source checkout, or the copy packed into the wheel."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[4] / "migrations", here.parents[2] / "_migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the migrations directory is missing from this installation")


def _commands(url: str, stdout: io.StringIO | None = None) -> AlembicCommands:
    config = SQLAlchemyAsyncConfig(
        connection_string=async_url(url),
        engine_config=EngineConfig(poolclass=NullPool),
        alembic_config=AlembicAsyncConfig(
            script_location=str(script_location()),
            version_table_name=VERSION_TABLE,
            script_config="",
            render_as_batch=False,
            compare_type=True,
        ),
    )
    commands = AlembicCommands(sqlalchemy_config=config)
    if stdout is not None:
        commands.config.stdout = stdout
    return commands


def upgrade(url: str, revision: str = "head") -> None:
    _commands(url).upgrade(revision)


def downgrade(url: str, revision: str = "base") -> None:
    _commands(url).downgrade(revision)


def current(url: str) -> str:
    out = io.StringIO()
    _commands(url, out).current()
    return out.getvalue().strip()

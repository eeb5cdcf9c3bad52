"""What every CLI command needs first: valid settings and reachable servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from shop.bootstrap import Container, EmbeddedServers, resolve_services
from shop.config import ConfigError, Settings, load_settings
from shop.domain.errors import DomainError
from shop.logs import configure_logging

T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    configure_logging(settings.log_level, json=settings.log_json)
    return settings


def resolved_settings() -> tuple[Settings, EmbeddedServers]:
    """Settings with URLs filled in (embedded servers started or joined when unset)."""
    return resolve_services(settings_or_exit())


def run_with_container(work: Callable[[Container], Awaitable[T]]) -> T:
    """Run ``work`` on a freshly built container (closed after), in a new event loop; a
    domain refusal becomes a click error (exit 1, its message), not a traceback."""
    settings, servers = resolved_settings()

    async def main() -> T:
        container = Container.build(settings)
        try:
            return await work(container)
        finally:
            await container.close()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        servers.stop()

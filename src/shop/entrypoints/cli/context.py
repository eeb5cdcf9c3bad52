"""What every CLI command needs first: valid settings and reachable servers."""

from __future__ import annotations

import click

from shop.bootstrap import EmbeddedServers, resolve_services
from shop.config import ConfigError, Settings, load_settings
from shop.logs import configure_logging


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

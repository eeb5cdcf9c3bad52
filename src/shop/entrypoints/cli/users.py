"""``shop users create-admin EMAIL``: how an operator gets the first admin.

The password comes from ``SHOP_ADMIN_PASSWORD`` (for scripts) or a hidden prompt (for people);
it is never taken as a command-line argument, where it would land in shell history and in
``ps`` output.
"""

from __future__ import annotations

import asyncio

import click

from shop.adapters.db import migrations
from shop.bootstrap import Container, require_urls
from shop.config import Settings
from shop.domain.errors import DomainError
from shop.domain.identity import services
from shop.domain.identity.model import User
from shop.entrypoints.cli.context import resolved_settings


@click.group()
def users() -> None:
    """Manage user accounts."""


async def _create_admin(
    settings: Settings, email: str, password: str, name: str
) -> tuple[User, bool]:
    container = Container.build(settings)
    try:
        return await services.create_admin(
            email,
            password,
            name=name,
            uow=container.identity_uow(),
            hasher=container.password_hasher,
        )
    finally:
        await container.close()


@users.command("create-admin")
@click.argument("email")
@click.option("--name", default="Administrator", show_default=True, help="Name of a new admin.")
def create_admin(email: str, name: str) -> None:
    """Make EMAIL an admin (created, or promoted if it is a customer); safe to run again.

    The password is SHOP_ADMIN_PASSWORD, or asked for when that is unset; the account's
    password is set to it either way, so you know how to log in afterwards.
    """
    settings, servers = resolved_settings()
    try:
        password = settings.admin_password or click.prompt(
            f"Password for {email}", hide_input=True, confirmation_prompt=True
        )
        database_url, _ = require_urls(settings)
        migrations.upgrade(database_url)  # as `shop up` does: a fresh install just works
        admin, created = asyncio.run(_create_admin(settings, email, password, name))
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        servers.stop()
    verb = "created" if created else "updated"
    click.echo(f"{verb} admin {admin.email} (id {admin.id})")

"""The ``shop`` command. Each command group lives in its own module and registers here."""

from __future__ import annotations

import click

from shop.entrypoints.cli.bench import bench
from shop.entrypoints.cli.drops import drops
from shop.entrypoints.cli.payments import payments
from shop.entrypoints.cli.seed import seed
from shop.entrypoints.cli.server import migrate, up
from shop.entrypoints.cli.stock import stock
from shop.entrypoints.cli.users import users


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Run and operate the shop (first-come-first-served store backend)."""


main.add_command(up)
main.add_command(migrate)
main.add_command(bench)
main.add_command(users)
main.add_command(seed)
main.add_command(stock)
main.add_command(payments)
main.add_command(drops)

__all__ = ["main"]

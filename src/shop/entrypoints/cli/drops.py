"""``shop drops list|show ID``: the drops and their live figures, as rich tables.

Reads the same PostgreSQL and Redis as the running app (the figures are the admin API's).
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from shop.bootstrap import Container
from shop.domain.drops import services
from shop.domain.drops.model import Drop, DropFigures, DropStatus
from shop.entrypoints.cli.context import run_with_container


def _when(drop: Drop) -> tuple[str, str]:
    ends = drop.rules.ends_at
    return (
        drop.rules.starts_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "-" if ends is None else ends.strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


@click.group()
def drops() -> None:
    """Scheduled sales (drops) and their waiting rooms."""


@drops.command("list")
def list_drops() -> None:
    """Scheduled and live drops, soonest first."""

    async def work(container: Container) -> list[tuple[Drop, DropStatus]]:
        return await services.list_drops(
            drops=container.drops, stock=container.stock, clock=container.clock
        )

    table = Table(title="drops (not ended)", title_justify="left")
    for column in ("id", "name", "status", "starts", "ends", "options", "limit", "queue"):
        table.add_column(column)
    for drop, status in run_with_container(work):
        starts, ends = _when(drop)
        queue = drop.rules.queue
        table.add_row(
            str(drop.id),
            drop.rules.name,
            status.value,
            starts,
            ends,
            ",".join(str(o) for o in drop.rules.option_ids),
            str(drop.rules.per_buyer_limit),
            f"{queue.admit_per_second}/s" if queue.enabled else "off",
        )
    Console().print(table)


@drops.command("show")
@click.argument("drop_id", type=int)
def show(drop_id: int) -> None:
    """One drop's rules and live figures (sold, held, left, waiting, admitted)."""

    async def work(container: Container) -> tuple[Drop, DropStatus, DropFigures]:
        drop = await services.get_drop(drop_id, drops=container.drops)
        status = await services.drop_status(drop, stock=container.stock, clock=container.clock)
        figures = await services.drop_figures(
            drop, drops=container.drops, room=container.room, stock=container.stock
        )
        return drop, status, figures

    drop, status, figures = run_with_container(work)
    rules = drop.rules
    starts, ends = _when(drop)
    table = Table(title=f"drop {drop.id}: {rules.name} ({status.value})", title_justify="left")
    table.add_column("rule")
    table.add_column("value", justify="right")
    for name, value in (
        ("starts", starts),
        ("ends", ends),
        ("options", ",".join(str(o) for o in rules.option_ids)),
        ("per buyer limit", str(rules.per_buyer_limit)),
        ("open orders per buyer", str(rules.max_open_orders_per_buyer)),
        ("payment methods", ", ".join(sorted(m.value for m in rules.payment_methods))),
        ("payment window", f"{round(rules.payment_window.total_seconds())} s"),
        ("queue", "on" if rules.queue.enabled else "off"),
        ("admission rate", f"{figures.admit_per_second}/s"),
        ("sold", str(figures.sold)),
        ("held (unpaid)", str(figures.held)),
        ("left", str(figures.left)),
        ("waiting", str(figures.waiting)),
        ("admitted (unused)", str(figures.admitted)),
    ):
        table.add_row(name, value)
    Console().print(table)

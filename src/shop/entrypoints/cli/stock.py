"""``shop stock status|use NAME|reconcile [--fix]``: see and steer how stock is sold.

Every command works on a running deployment: it joins the same PostgreSQL and Redis as the
app processes, and ``use`` switches all of them live (see ``adapters/redis/strategy.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich.console import Console
from rich.table import Table

from shop.bootstrap import STOCK_STRATEGIES, Container
from shop.domain.stock.model import OptionStock, StockRebuild
from shop.entrypoints.cli.context import run_with_container


def _table(title: str, options: Sequence[OptionStock]) -> Table:
    """One row per option; besides ``db stock``, one column per figure a store reports
    (``redis counter`` for the counter's home), so a new store's figures show unasked."""
    # Every figure any store reported, in the order they first appear.
    named = list(dict.fromkeys(name for option in options for name in option.figures))
    table = Table(title=title, title_justify="left")
    for column in ("option", "total", "sold", "held", "db stock", *named, "ledger", "drift"):
        table.add_column(column, justify="right")
    for option in options:
        drift = option.drift
        figures = [option.figures.get(name) for name in named]
        table.add_row(
            str(option.option_id),
            str(option.stock_total),
            str(option.sold),
            str(option.held),
            str(option.db_stock),
            *("-" if figure is None else str(figure) for figure in figures),
            str(option.expected),
            "-" if drift is None else (f"[red]{drift:+d}[/red]" if drift else "0"),
        )
    return table


def _print_rebuild(console: Console, rebuild: StockRebuild | None) -> None:
    """The last reset from the ledger, with what it changed: drift it absorbed stays visible."""
    if rebuild is None:
        console.print("last rebuild from the ledger: none")
        return
    at = rebuild.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    console.print(
        f"last rebuild from the ledger: {at} ({rebuild.strategy}, {rebuild.cause}): "
        f"{rebuild.options} option(s), {len(rebuild.changed)} changed"
    )
    if not rebuild.changed:
        return
    table = Table(title=f"changed by the rebuild (before = {rebuild.source})", title_justify="left")
    for column in ("option", "before", "after", "drift"):
        table.add_column(column, justify="right")
    for option in rebuild.changed:
        drift = option.drift
        table.add_row(
            str(option.option_id),
            "-" if option.before is None else str(option.before),
            str(option.after),
            "-" if drift is None else (f"[red]{drift:+d}[/red]" if drift else "0"),
        )
    console.print(table)


@click.group()
def stock() -> None:
    """Inspect the stock, switch the strategy live, repair drift."""


@stock.command()
@click.option("--option", "option_ids", type=int, multiple=True, help="Only these options.")
def status(option_ids: tuple[int, ...]) -> None:
    """Active strategy and, per option, DB stock vs each store's figures vs the ledger.

    ``ledger`` is stock_total - sold (lines of live orders) - held (reservations no live
    order accounts for yet); ``drift`` is how far the store the strategy sells from is off.
    Then the last rebuild from the ledger (a recovery after Redis lost the counters, or a
    ``reconcile --fix``) and what it changed per option.
    """

    async def work(
        container: Container,
    ) -> tuple[str, Sequence[OptionStock], StockRebuild | None]:
        operations = container.stock_operations
        active = await operations.active_strategy()
        options = await operations.status(list(option_ids) or None)
        return active, options, await operations.last_rebuild()

    active, options, rebuild = run_with_container(work)
    console = Console()
    console.print(f"active stock strategy: [bold]{active}[/bold]")
    console.print(_table("stock per option", options))
    _print_rebuild(console, rebuild)


@stock.command()
@click.argument("name", type=click.Choice(sorted(STOCK_STRATEGIES)))
def use(name: str) -> None:
    """Switch every running process to strategy NAME, moving the stock state over."""
    previous = run_with_container(lambda container: container.stock_operations.use(name))
    if previous == name:
        click.echo(f"stock strategy is already {name}")
    else:
        click.echo(f"stock strategy switched from {previous} to {name}")


@stock.command()
@click.option("--fix", is_flag=True, help="Repair the drift from the ledger.")
def reconcile(fix: bool) -> None:
    """Compare the stores with the ledger; exit 1 on drift unless --fix repaired it."""

    async def work(container: Container) -> Sequence[OptionStock]:
        return await container.stock_cases.reconcile(fix=fix)

    drifting = run_with_container(work)
    console = Console()
    if not drifting:
        console.print("no drift: every store agrees with the ledger")
        return
    console.print(_table("drifting options", drifting))
    if fix:
        console.print(f"repaired {len(drifting)} option(s) from the ledger")
        return
    raise click.exceptions.Exit(1)

"""``shop seed``: a realistic catalog in seconds, for demos and benchmarks."""

from __future__ import annotations

import asyncio
import datetime
import random
import time

import click

from shop.adapters.db import migrations
from shop.bootstrap import Container, require_urls
from shop.config import Settings
from shop.domain.catalog.bulk import LoadedCatalog
from shop.domain.catalog.services import seed_catalog
from shop.entrypoints.cli.context import resolved_settings
from shop.entrypoints.cli.sample_data import sample_catalog


async def run_seed(
    settings: Settings,
    *,
    products: int,
    categories: int,
    seed: int,
    through_port: bool,
) -> tuple[LoadedCatalog, float]:
    """Generate and load; returns what was written and the seconds it took."""
    started = time.perf_counter()
    sample = sample_catalog(
        products=products,
        categories=categories,
        rng=random.Random(seed),
        now=datetime.datetime.now(datetime.UTC),
    )
    container = Container.build(settings)
    try:
        loaded = await seed_catalog(
            container.catalog.bulk, container.stock, sample, through_port=through_port
        )
    finally:
        await container.close()
    return loaded, time.perf_counter() - started


@click.command()
@click.option("--products", default=1_000, show_default=True, type=click.IntRange(0, 10_000_000))
@click.option("--categories", default=40, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--seed", default=1, show_default=True, help="Random seed: same seed, same data.")
@click.option(
    "--through-port",
    is_flag=True,
    help="Put each option's stock on sale with one put_on_sale call (slow; any strategy).",
)
def seed(products: int, categories: int, seed: int, through_port: bool) -> None:
    """Add a generated catalog: categories, products, options with stock, images.

    Adds to what is there (never deletes). Stock is written into the ledger by default;
    see `seed_catalog` for how each stock strategy picks it up.
    """
    settings, servers = resolved_settings()
    try:
        database_url, _ = require_urls(settings)
        migrations.upgrade(database_url)
        loaded, seconds = asyncio.run(
            run_seed(
                settings,
                products=products,
                categories=categories,
                seed=seed,
                through_port=through_port,
            )
        )
    finally:
        servers.stop()
    units = sum(units for _, units in loaded.option_units)
    click.echo(
        f"seeded {len(loaded.category_ids)} categories, {len(loaded.product_ids)} products, "
        f"{len(loaded.option_units)} options ({units} units on sale) in {seconds:.1f}s"
    )

"""``shop seed``: a realistic catalog, loaded in bulk, with its stock on sale."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import httpx
from click.testing import CliRunner
from sqlalchemy import text

from shop.bootstrap import Container
from shop.domain.identity.model import Role
from shop.entrypoints.cli import main
from shop.entrypoints.cli.sample_data import sample_catalog
from shop.entrypoints.cli.seed import run_seed
from tests.conftest import bearer

NOW = datetime(2026, 11, 25, tzinfo=UTC)


async def _one(container: Container, sql: str) -> int:
    async with container.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


def test_the_same_seed_gives_the_same_catalog() -> None:
    def build(seed: int) -> list[str]:
        sample = sample_catalog(products=50, categories=12, rng=random.Random(seed), now=NOW)
        return [product.name for product in sample.products]

    assert build(3) == build(3)
    assert build(3) != build(4)


def test_the_category_tree_is_at_most_three_deep() -> None:
    sample = sample_catalog(products=0, categories=300, rng=random.Random(1), now=NOW)
    depth: dict[int, int] = {}
    for category in sample.categories:
        parent = category.parent_key
        depth[category.key] = 1 if parent is None else depth[parent] + 1
    assert max(depth.values()) == 3
    assert sum(1 for c in sample.categories if c.parent_key is None) == 8


async def test_seeding_writes_a_listable_catalog_with_stock_on_sale(
    clean: Container, client: httpx.AsyncClient
) -> None:
    loaded, _ = await run_seed(
        clean.settings, products=300, categories=20, seed=7, through_port=False
    )

    assert await _one(clean, "SELECT count(*) FROM product") == 300
    assert await _one(clean, "SELECT count(*) FROM category") == 20
    assert await _one(clean, "SELECT count(*) FROM option") == len(loaded.option_units)
    unlinked = "SELECT count(*) FROM product p WHERE NOT EXISTS "
    unlinked += "(SELECT 1 FROM product_category pc WHERE pc.product_id = p.id)"
    assert await _one(clean, unlinked) == 0
    assert await _one(clean, "SELECT count(*) FROM option WHERE stock <> stock_total") == 0
    units = dict(loaded.option_units)
    assert await clean.stock.available(list(units)) == units
    assert any(units.values()) and not all(units.values()), "some options start sold out"

    # New rows after the seed take fresh ids: the sequences moved past the seeded ones.
    created = await client.post(
        "/api/admin/categories",
        json={"name": "After seeding"},
        headers=bearer(clean, role=Role.ADMIN),
    )
    assert created.json()["id"] == 21
    top = loaded.category_ids[0]
    listed = (await client.get(f"/api/products?category_id={top}&limit=100")).json()["items"]
    assert listed, "a department lists the products of its sub-categories"


async def test_stock_can_also_go_on_sale_through_the_port(clean: Container) -> None:
    loaded, _ = await run_seed(clean.settings, products=30, categories=5, seed=2, through_port=True)
    units = dict(loaded.option_units)
    assert await clean.stock.available(list(units)) == units
    assert await _one(clean, "SELECT sum(stock_total) FROM option") == sum(units.values())


async def test_shop_seed_loads_the_requested_catalogue_from_the_command_line(
    clean: Container,
) -> None:
    env = {
        "SHOP_DATABASE_URL": clean.settings.database_url,
        "SHOP_REDIS_URL": clean.settings.redis_url,
        "SHOP_JWT_SECRET": clean.settings.jwt_secret,
        "SHOP_DATA_DIR": clean.settings.data_dir,
        "SHOP_STOCK_STRATEGY": clean.settings.stock_strategy,
        "SHOP_ENVIRONMENT": "test",
        "SHOP_LOG_LEVEL": "WARNING",
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["seed", "--products", "120", "--categories", "9"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "seeded 9 categories, 120 products" in result.output
    assert await _one(clean, "SELECT count(*) FROM product") == 120

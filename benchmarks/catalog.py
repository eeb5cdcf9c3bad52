"""Listing latency at page 1 vs page 1,000 on a 100k-product catalog (not a test).

    uv run python -m benchmarks.catalog [--products 100000] [--categories 200] [--repeat 100]

Starts a private embedded PostgreSQL and Redis in a temporary directory (or uses
``SHOP_BENCH_DATABASE_URL`` / ``SHOP_BENCH_REDIS_URL``: a fresh database is created there and
dropped afterwards), seeds the catalog with ``shop seed``'s loader, gives products a spread
of popularity scores (many ties, as in real data), then times ``GET /api/products`` through
the real app (in-process ASGI, so the figures exclude the network but include routing,
validation, SQL and JSON), and the listing adapter alone. For each listing it walks the
cursor from page 1 to the deepest page measured, then times that page and page 1 ``--repeat``
times each.

For contrast it also times the deep page read by the very same statement with ``OFFSET``
instead of a cursor: what keyset pagination saves.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shop.adapters.db import migrations
from shop.adapters.db.catalog_listing import SUBTREE_PROBE, CategoryFilter, listing_statement
from shop.adapters.db.engine import plain_dsn
from shop.adapters.embedded import EmbeddedPostgres, EmbeddedRedis
from shop.bootstrap import Container
from shop.config import Settings
from shop.domain.catalog.model import ListingQuery, Sort
from shop.domain.catalog.services import position_from, seed_catalog
from shop.entrypoints.cli.sample_data import sample_catalog
from shop.entrypoints.http.app import create_app

LIMIT = 20
SUBTREE_SIZE = text(
    "WITH RECURSIVE sub(id) AS (SELECT CAST(:c AS bigint) UNION "
    "SELECT c.id FROM category c JOIN sub ON c.parent_id = sub.id) "
    "SELECT count(DISTINCT product_id) FROM product_category "
    "WHERE category_id IN (SELECT id FROM sub)"
)
LARGEST_LEAF = text(
    "SELECT category_id, count(*) FROM product_category pc WHERE NOT EXISTS "
    "(SELECT 1 FROM category c WHERE c.parent_id = pc.category_id) "
    "GROUP BY category_id ORDER BY 2 DESC LIMIT 1"
)


@dataclass
class Row:
    listing: str
    deep_page: int
    http_first: float
    http_deep: float
    adapter_first: float
    adapter_deep: float
    offset_deep: float


async def _median_ms(call: Callable[[], Awaitable[object]], repeat: int) -> float:
    for _ in range(3):  # warm caches and connections
        await call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def _cursor_of_page(client: httpx.AsyncClient, query: str, page: int) -> str | None:
    """Walk the listing to the cursor that opens ``page`` (1-based)."""
    cursor = None
    for _ in range(page - 1):
        url = f"/api/products?{query}&limit={LIMIT}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url)
        # A refusal (429, 5xx) stops the walk with its own status, not a KeyError on its body.
        response.raise_for_status()
        cursor = response.json()["next_cursor"]
        if cursor is None:
            raise SystemExit(f"{query}: fewer than {page} pages")
    return cursor


async def _listing(
    client: httpx.AsyncClient,
    container: Container,
    *,
    name: str,
    sort: Sort,
    category_id: int | None,
    deep_page: int,
    repeat: int,
) -> Row:
    query = f"sort={sort.value}&limit={LIMIT}"
    if category_id is not None:
        query += f"&category_id={category_id}"
    cursor = await _cursor_of_page(client, query, deep_page)
    assert cursor is not None

    async def http(url: str) -> None:
        (await client.get(url)).raise_for_status()

    reads = container.catalog.reads
    first = ListingQuery(sort=sort, limit=LIMIT, category_id=category_id)
    deep = ListingQuery(
        sort=sort, limit=LIMIT, category_id=category_id, after=position_from(sort, cursor)
    )
    subtree = None
    if category_id is not None:
        async with container.engine.connect() as conn:
            probe = (
                await conn.execute(
                    SUBTREE_PROBE,
                    {"category_id": category_id, "fixed_bound": None, "page_rows": LIMIT + 1},
                )
            ).one()
        subtree = CategoryFilter(ids=list(probe.ids), dense=probe.links >= probe.bound)
    # The very statement the adapter runs for page 1, pushed to the deep page with OFFSET.
    offset_sql = listing_statement(first, subtree).offset((deep_page - 1) * LIMIT)

    async def offset() -> None:
        async with container.engine.connect() as conn:
            await conn.execute(offset_sql)

    return Row(
        listing=name,
        deep_page=deep_page,
        http_first=await _median_ms(lambda: http(f"/api/products?{query}"), repeat),
        http_deep=await _median_ms(lambda: http(f"/api/products?{query}&cursor={cursor}"), repeat),
        adapter_first=await _median_ms(lambda: reads.listing(first), repeat),
        adapter_deep=await _median_ms(lambda: reads.listing(deep), repeat),
        offset_deep=await _median_ms(offset, max(5, repeat // 5)),
    )


async def run(args: argparse.Namespace, database_url: str, redis_url: str) -> list[Row]:
    # The settings are built here, not read from SHOP_* variables, so that a developer's .env
    # cannot point the benchmark at their own database. The throttle is therefore switched off
    # here: the walk to page 1,000 is one anonymous client, far above the anonymous quota, and
    # the throttle's Redis round trip is not what this benchmark measures.
    settings = Settings(
        environment="test",
        database_url=database_url,
        redis_url=redis_url,
        jwt_secret="benchmark-secret-not-for-production-0123456789",
        stock_strategy="db",
        log_level="WARNING",
        database_pool_size=4,
        rate_limit_enabled=False,
    )
    await asyncio.to_thread(migrations.upgrade, database_url)
    container = Container.build(settings)
    try:
        started = time.perf_counter()
        sample = sample_catalog(
            products=args.products,
            categories=args.categories,
            rng=random.Random(1),
            now=datetime.datetime.now(datetime.UTC),
        )
        loaded = await seed_catalog(container.catalog.bulk, container.stock, sample)
        print(f"seeded {args.products} products in {time.perf_counter() - started:.1f}s")
        async with container.engine.begin() as conn:
            # Skewed scores with many ties (a quarter under 20), as real demand produces.
            await conn.execute(
                text("UPDATE product SET popularity = floor(power(random(), 3) * 1000)::bigint")
            )
        async with container.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM ANALYZE product"))
        department = loaded.category_ids[0]
        async with container.engine.connect() as conn:
            in_department = (await conn.execute(SUBTREE_SIZE, {"c": department})).scalar_one()
            leaf, in_leaf = (await conn.execute(LARGEST_LEAF)).one()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(container)), base_url="http://bench"
        ) as client:
            category_deep = min(args.deep_page, int(in_department) // LIMIT)
            cases = [
                ("newest, all products", Sort.NEWEST, None, args.deep_page),
                ("popular, all products", Sort.POPULAR, None, args.deep_page),
                (f"newest, one department ({in_department:,} products)", Sort.NEWEST,
                 department, category_deep),
                (f"popular, one department ({in_department:,} products)", Sort.POPULAR,
                 department, category_deep),
                (f"newest, one leaf ({in_leaf:,} products)", Sort.NEWEST, leaf,
                 min(args.deep_page, int(in_leaf) // LIMIT)),
            ]  # fmt: skip
            rows = []
            for name, sort, category_id, page in cases:
                rows.append(
                    await _listing(
                        client,
                        container,
                        name=name,
                        sort=sort,
                        category_id=category_id,
                        deep_page=page,
                        repeat=args.repeat,
                    )
                )
                print(f"  measured: {name}", file=sys.stderr)
            return rows
    finally:
        await container.close()


def report(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"{args.products:,} products, {args.categories} categories, {LIMIT} per page; "
        f"medians of {args.repeat} requests, in ms.",
        "HTTP = GET /api/products through the app in-process (no network); query = the "
        "listing adapter alone; OFFSET = the same deep page read with OFFSET, not a cursor.",
        "",
        "| listing | deep page | HTTP p1 | HTTP deep | deep/p1 | query p1 | query deep "
        "| deep/p1 | OFFSET deep |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.listing} | {r.deep_page:,} | {r.http_first:.2f} | {r.http_deep:.2f} "
            f"| {r.http_deep / r.http_first:.2f}x | {r.adapter_first:.2f} "
            f"| {r.adapter_deep:.2f} | {r.adapter_deep / r.adapter_first:.2f}x "
            f"| {r.offset_deep:.2f} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Row]:
    external_db = os.environ.get("SHOP_BENCH_DATABASE_URL")
    external_redis = os.environ.get("SHOP_BENCH_REDIS_URL")
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp:
        postgres = redis = None
        try:
            if external_db:
                server_url = external_db
            else:
                postgres = EmbeddedPostgres(Path(tmp))
                server_url = await asyncio.to_thread(postgres.start)
            if external_redis:
                redis_url = external_redis
            else:
                redis = EmbeddedRedis(Path(tmp))
                redis_url = await asyncio.to_thread(redis.start)
            name = f"shop_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(plain_dsn(server_url))
            await admin.execute(f'CREATE DATABASE "{name}"')
            database_url = make_url(server_url).set(database=name).render_as_string(False)
            try:
                rows = await run(args, database_url, redis_url)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
            print()
            print(report(rows, args))
            return rows
        finally:
            if redis is not None:
                redis.stop()
            if postgres is not None:
                postgres.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--categories", type=int, default=200)
    parser.add_argument("--deep-page", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=100)
    return parser.parse_args(argv)


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(main_async(parse_args()))


if __name__ == "__main__":
    main()

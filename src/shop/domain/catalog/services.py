"""Catalog use cases: each takes its ports as arguments and holds the rule.

Stock is never written here: registration and restock hand units to the stock port
(``put_on_sale``) after the catalog rows are committed, so that every strategy — including
those that keep counters in Redis — learns about the units the moment they can be sold, and
no separate "initialize" step exists that a restock could forget.
"""

from __future__ import annotations

import asyncio

from shop.domain.catalog.bulk import LoadedCatalog, SampleCatalog
from shop.domain.catalog.model import (
    Category,
    CategoryChange,
    CategoryNode,
    DeleteMode,
    Image,
    ListingQuery,
    NewCategory,
    NewestAfter,
    NewOption,
    NewProduct,
    OptionOnSale,
    PopularAfter,
    PopularityWeights,
    Position,
    ProductChange,
    ProductDetail,
    ProductSummary,
    Sort,
    check_stock_total,
    check_url,
)
from shop.domain.catalog.ports import (
    CatalogBulkLoad,
    CatalogReads,
    CatalogUnitOfWorkFactory,
    PopularityScores,
    PopularRanking,
)
from shop.domain.errors import NotFound
from shop.domain.idempotency import check_idempotency_key
from shop.domain.paging import (
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
    micros_of,
    moment_of,
    page_of,
)
from shop.domain.stock.ports import StockReservation
from shop.domain.stock.preconditions import check_units_per_call


async def category_tree(reads: CatalogReads) -> tuple[CategoryNode, ...]:
    return (await reads.category_tree()).roots()


async def create_category(uow: CatalogUnitOfWorkFactory, new: NewCategory) -> Category:
    async with uow() as tx:
        tree = await tx.categories.tree()
        tree.check_parent(new.parent_id)
        category = await tx.categories.add(new)
        await tx.commit()
    return category


async def change_category(
    uow: CatalogUnitOfWorkFactory, category_id: int, change: CategoryChange
) -> Category:
    """Rename, reorder or move. The cycle check and the write share one locked snapshot."""
    async with uow() as tx:
        tree = await tx.categories.tree()
        tree.get(category_id)
        if change.move:
            tree.check_move(category_id, change.parent_id)
        category = await tx.categories.update(category_id, change)
        await tx.commit()
    return category


def delete_mode(*, cascade: bool, move_to: int | None) -> DeleteMode:
    """``move_to`` wins over ``cascade``: once the contents have moved, the category is empty
    and there is nothing left to cascade, so the two together mean what ``move_to`` means."""
    if move_to is not None:
        return DeleteMode.MOVE
    return DeleteMode.CASCADE if cascade else DeleteMode.REFUSE


async def delete_category(
    uow: CatalogUnitOfWorkFactory,
    category_id: int,
    *,
    mode: DeleteMode,
    move_to: int | None = None,
) -> None:
    async with uow() as tx:
        tree = await tx.categories.tree()
        tree.get(category_id)
        products = 0
        if mode is not DeleteMode.CASCADE:
            products = await tx.categories.product_count(category_id)
        tree.check_delete(category_id, mode=mode, product_count=products, move_to=move_to)
        if mode is DeleteMode.MOVE and move_to is not None:
            await tx.categories.move_contents(category_id, move_to)
            await tx.categories.delete([category_id])
        else:
            await tx.categories.delete(list(reversed(tree.subtree(category_id))))
        await tx.commit()


async def register_product(
    uow: CatalogUnitOfWorkFactory,
    reads: CatalogReads,
    stock: StockReservation,
    new: NewProduct,
) -> ProductDetail:
    """Rows first (options with no stock), commit, then put each option's stock on sale.

    If the stock port fails after the commit, the product exists with fewer units on sale
    than asked; the error reaches the admin, and a restock completes it. The opposite order
    would put units on sale for options that a rollback could still erase.
    """
    async with uow() as tx:
        await tx.products.check_categories(new.category_ids)
        created = await tx.products.add(new)
        await tx.commit()
    for option_id, units in created.option_stock:
        if units:
            await stock.put_on_sale(option_id, units)
    return await product_detail(reads, stock, created.product_id)


async def change_product(
    uow: CatalogUnitOfWorkFactory,
    reads: CatalogReads,
    stock: StockReservation,
    product_id: int,
    change: ProductChange,
) -> ProductDetail:
    async with uow() as tx:
        if change.category_ids is not None:
            await tx.products.check_categories(change.category_ids)
        await tx.products.update(product_id, change)
        await tx.commit()
    return await product_detail(reads, stock, product_id)


async def delete_product(
    uow: CatalogUnitOfWorkFactory, ranking: PopularRanking, product_id: int
) -> None:
    """Options, images, category links and wishes go with it (their rows cascade)."""
    async with uow() as tx:
        await tx.products.delete(product_id)
        await tx.commit()
    await ranking.forget(product_id)


async def add_option(
    uow: CatalogUnitOfWorkFactory,
    reads: CatalogReads,
    stock: StockReservation,
    product_id: int,
    new: NewOption,
) -> OptionOnSale:
    async with uow() as tx:
        option = await tx.products.add_option(product_id, new)
        await tx.commit()
    if new.stock:
        await stock.put_on_sale(option.id, new.stock)
    return await option_on_sale(reads, stock, option.id)


async def restock(
    reads: CatalogReads, stock: StockReservation, option_id: int, units: int, *, key: str
) -> OptionOnSale:
    """Units go on sale immediately through the port: no separate initialize step.

    Idempotent per ``key``: an admin who retries after an error or a lost answer (the units
    may be on sale already) puts them on sale once and gets the option as it is now; the
    same key for another option or number of units is refused.
    """
    check_idempotency_key(key)
    check_units_per_call(units)
    option = await reads.option(option_id)
    if option is None:
        raise NotFound(f"option {option_id} does not exist")
    check_stock_total(option.stock_total, units)
    await stock.put_on_sale(option_id, units, key=key)
    return await option_on_sale(reads, stock, option_id)


async def add_image(
    uow: CatalogUnitOfWorkFactory, product_id: int, url: str, position: int | None
) -> Image:
    check_url(url)
    async with uow() as tx:
        image = await tx.products.add_image(product_id, url, position)
        await tx.commit()
    return image


async def product_detail(
    reads: CatalogReads, stock: StockReservation, product_id: int
) -> ProductDetail:
    """The product with each option's available units, asked of the stock port in one call."""
    product = await reads.product(product_id)
    if product is None:
        raise NotFound(f"product {product_id} does not exist")
    option_ids = [option.id for option in product.options]
    available = dict(await stock.available(option_ids)) if option_ids else {}
    return ProductDetail(product=product, available=available)


async def option_on_sale(
    reads: CatalogReads, stock: StockReservation, option_id: int
) -> OptionOnSale:
    """The option as it is now (after ``put_on_sale`` raised its total) with its units."""
    option = await reads.option(option_id)
    if option is None:
        raise NotFound(f"option {option_id} does not exist")
    available = await stock.available([option_id])
    return OptionOnSale(option=option, available=available.get(option_id, 0))


def cursor_after(sort: Sort, last: ProductSummary) -> str:
    if sort is Sort.NEWEST:
        return encode_cursor(sort.value, (micros_of(last.created_at), last.id))
    return encode_cursor(sort.value, (last.popularity, last.id))


def position_from(sort: Sort, cursor: str) -> Position:
    key, last_id = decode_cursor(cursor, kind=sort.value, size=2)
    if last_id < 1:
        raise invalid_cursor("the cursor is not one this server issued")
    if sort is Sort.NEWEST:
        return NewestAfter(created_at=moment_of(key), id=last_id)
    return PopularAfter(popularity=key, id=last_id)


async def list_products(
    reads: CatalogReads,
    *,
    sort: Sort,
    limit: int,
    category_id: int | None = None,
    cursor: str | None = None,
) -> Page[ProductSummary]:
    """One keyset page; a category includes all its descendants."""
    query = ListingQuery(
        sort=sort,
        limit=check_limit(limit),
        category_id=category_id,
        after=None if cursor is None else position_from(sort, cursor),
    )
    rows = await reads.listing(query)
    if not rows and category_id is not None and not await reads.category_exists(category_id):
        raise NotFound(f"category {category_id} does not exist")
    return page_of(rows, query.limit, lambda last: cursor_after(sort, last))


async def popular_products(
    ranking: PopularRanking, reads: CatalogReads, limit: int
) -> list[ProductSummary]:
    """The published top list; straight from PostgreSQL until the first refresh publishes one
    (a fresh install, or a Redis that lost its data), so the page is never empty by accident."""
    check_limit(limit)
    published = await ranking.top(limit)
    if published is not None:
        return published
    return await reads.most_popular(limit)


async def refresh_popularity(
    scores: PopularityScores,
    reads: CatalogReads,
    ranking: PopularRanking,
    *,
    weights: PopularityWeights,
    list_size: int,
) -> int | None:
    """Recompute every score (set-based, in PostgreSQL), then publish the new top list.

    Returns how many scores changed, or None when another run was already recomputing (SAQ
    delivers at least once and several workers may fire the same cron tick).
    """
    changed = await scores.recompute(weights)
    if changed is None:
        return None
    await ranking.replace(await reads.most_popular(list_size))
    return changed


async def seed_catalog(
    bulk: CatalogBulkLoad,
    stock: StockReservation,
    sample: SampleCatalog,
    *,
    through_port: bool = False,
    concurrency: int = 8,
) -> LoadedCatalog:
    """Load a sample catalog and leave every option's units on sale.

    Default: the bulk load writes the units into the ledger (``stock_total = stock``), the
    state ``put_on_sale`` would leave, in the same COPY; strategies that read the ledger
    (db, redlock) sell them at once, and a strategy that keeps counters elsewhere rebuilds
    missing counters from the ledger (the port's "recoverable" invariant). ``through_port`` instead
    calls ``put_on_sale`` once per option (strategy-agnostic, about a thousand options a
    second): for small catalogs, or a strategy that cannot rebuild on its own.
    """
    loaded = await bulk.load(sample, stock_in_ledger=not through_port)
    if through_port:
        gate = asyncio.Semaphore(concurrency)

        async def put(option_id: int, units: int) -> None:
            async with gate:
                await stock.put_on_sale(option_id, units)

        await asyncio.gather(*(put(o, units) for o, units in loaded.option_units if units))
    return loaded

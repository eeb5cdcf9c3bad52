"""Ports of the catalog. Adapters satisfy them structurally (no base classes).

Writes go through a unit of work: nothing is committed unless the use case calls ``commit``,
so a rule that fails half-way leaves the catalog as it was. Reads need no transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol

from shop.domain.catalog.bulk import LoadedCatalog, SampleCatalog
from shop.domain.catalog.model import (
    Category,
    CategoryChange,
    CategoryTree,
    CreatedProduct,
    Image,
    ListingQuery,
    NewCategory,
    NewOption,
    NewProduct,
    Option,
    PopularityWeights,
    Product,
    ProductChange,
    ProductSummary,
)


class Categories(Protocol):
    async def tree(self) -> CategoryTree:
        """Every category, read after locking the tree against other writers of this unit
        of work: two concurrent moves must not each pass the cycle check and make a loop."""
        ...

    async def add(self, new: NewCategory) -> Category: ...

    async def update(self, category_id: int, change: CategoryChange) -> Category: ...

    async def product_count(self, category_id: int) -> int:
        """Products linked directly to the category (locked: no new link until commit)."""
        ...

    async def move_contents(self, category_id: int, to: int) -> None:
        """Children get ``to`` as parent; product links move to ``to`` (merged, not doubled)."""
        ...

    async def delete(self, category_ids: Sequence[int]) -> None:
        """Unlink every product from these categories, then delete them (deepest first)."""
        ...


class Products(Protocol):
    async def check_categories(self, category_ids: Sequence[int]) -> None:
        """Raise ``InvalidInput`` naming the ids that do not exist; keep the others from being
        deleted until commit (a product must never end up linked to a vanished category)."""
        ...

    async def add(self, new: NewProduct) -> CreatedProduct:
        """Write the product, its options (with no stock: the stock port adds it after commit),
        images and category links."""
        ...

    async def update(self, product_id: int, change: ProductChange) -> None:
        """Raise ``NotFound`` for an unknown product."""
        ...

    async def delete(self, product_id: int) -> None:
        """``NotFound`` if unknown; ``Conflict`` if it was ever ordered (orders keep history).

        Decided against purchases in flight: an order either committed first (``Conflict``)
        or finds its option gone (``OptionWithdrawn``). ``Unavailable`` if purchases keep
        the product's rows busy for longer than the delete waits."""
        ...

    async def add_option(self, product_id: int, option: NewOption) -> Option:
        """A new option with no stock; ``NotFound`` for an unknown product."""
        ...

    async def add_image(self, product_id: int, url: str, position: int | None) -> Image:
        """Append (or place at ``position``); ``NotFound`` for an unknown product."""
        ...


class CatalogUnitOfWork(Protocol):
    @property
    def categories(self) -> Categories: ...

    @property
    def products(self) -> Products: ...

    async def __aenter__(self) -> CatalogUnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back whatever was not committed."""
        ...

    async def commit(self) -> None: ...


CatalogUnitOfWorkFactory = Callable[[], CatalogUnitOfWork]


class CatalogReads(Protocol):
    """What customers read. Listings are keyset queries: cost does not grow with depth."""

    async def category_tree(self) -> CategoryTree: ...

    async def category_exists(self, category_id: int) -> bool: ...

    async def product(self, product_id: int) -> Product | None: ...

    async def option(self, option_id: int) -> Option | None: ...

    async def listing(self, query: ListingQuery) -> list[ProductSummary]:
        """Up to ``query.limit + 1`` products strictly after ``query.after`` in the query's
        order (ties broken by id), in the category or any of its descendants."""
        ...

    async def most_popular(self, limit: int) -> list[ProductSummary]: ...


class CatalogBulkLoad(Protocol):
    async def load(self, sample: SampleCatalog, *, stock_in_ledger: bool) -> LoadedCatalog:
        """Write a whole sample catalog in one transaction.

        ``stock_in_ledger`` writes each option's units straight into ``stock_total`` and
        ``stock`` (what ``put_on_sale`` would leave in the ledger, without one call per
        option); otherwise options start empty and the caller puts units on sale."""
        ...


class PopularityScores(Protocol):
    async def recompute(self, weights: PopularityWeights) -> int | None:
        """Recompute every product's score in one set-based statement; return how many
        changed, or None if another run holds the recompute (it will publish the result)."""
        ...


class PopularRanking(Protocol):
    """The global top list, kept outside PostgreSQL for the hottest page of a flash sale."""

    async def replace(self, products: Sequence[ProductSummary]) -> None:
        """Swap the whole list at once: readers see the old list or the new one, never a mix."""
        ...

    async def top(self, limit: int) -> list[ProductSummary] | None:
        """The first ``limit`` entries, or None when no list was published yet."""
        ...

    async def forget(self, product_id: int) -> None:
        """Drop a deleted product from the published list before the next refresh."""
        ...

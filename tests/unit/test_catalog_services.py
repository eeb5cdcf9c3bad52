"""Catalog use cases against small in-memory ports: ordering of writes and stock, paging,
the popular list's fallback. No I/O: the adapters are tested against the real servers."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pytest

from shop.domain.catalog import services
from shop.domain.catalog.model import (
    CategoryTree,
    CreatedProduct,
    Image,
    ListingQuery,
    NewestAfter,
    NewOption,
    NewProduct,
    Option,
    PopularAfter,
    PopularityWeights,
    Product,
    ProductChange,
    ProductSummary,
    Sort,
)
from shop.domain.errors import Conflict, InvalidInput, MalformedRequest, NotFound
from shop.domain.limits import MAX_INT32, MAX_PRICE
from tests.unit.fakes import FakeStock

NOW = datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC)


@dataclass
class FakeProducts:
    events: list[str]
    fail_on_add: bool = False

    async def check_categories(self, category_ids: Sequence[int]) -> None:
        if 99 in category_ids:
            raise InvalidInput("unknown categories: 99")

    async def add(self, new: NewProduct) -> CreatedProduct:
        self.events.append("add")
        if self.fail_on_add:
            raise RuntimeError("disk full")
        return CreatedProduct(
            product_id=1, option_stock=[(10 + n, o.stock) for n, o in enumerate(new.options)]
        )

    async def update(self, product_id: int, change: ProductChange) -> None:
        self.events.append("update")

    async def delete(self, product_id: int) -> None:
        self.events.append("delete")

    async def add_option(self, product_id: int, option: NewOption) -> Option:
        raise AssertionError("not used by these tests")

    async def add_image(self, product_id: int, url: str, position: int | None) -> Image:
        raise AssertionError("not used by these tests")


@dataclass
class FakeUnitOfWork:
    events: list[str]
    products: FakeProducts
    categories: Any = None

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.events.append("exit")

    async def commit(self) -> None:
        self.events.append("commit")


@dataclass
class FakeReads:
    summaries: list[ProductSummary] = field(default_factory=list)
    queries: list[ListingQuery] = field(default_factory=list)
    options: dict[int, Option] = field(default_factory=dict)

    async def category_tree(self) -> CategoryTree:
        return CategoryTree([])

    async def category_exists(self, category_id: int) -> bool:
        return False

    async def product(self, product_id: int) -> Product | None:
        return Product(
            id=product_id,
            name="p",
            description="",
            price=1,
            popularity=0,
            created_at=NOW,
            updated_at=NOW,
            options=tuple(self.options.values()),
        )

    async def option(self, option_id: int) -> Option | None:
        return self.options.get(option_id)

    async def listing(self, query: ListingQuery) -> list[ProductSummary]:
        self.queries.append(query)
        return self.summaries[: query.limit + 1]

    async def most_popular(self, limit: int) -> list[ProductSummary]:
        return self.summaries[:limit]


def _summary(n: int, popularity: int = 0) -> ProductSummary:
    return ProductSummary(
        id=n,
        name=f"p{n}",
        price=100,
        popularity=popularity,
        created_at=NOW - datetime.timedelta(seconds=n),
        image_url=None,
    )


def _new_product(*stocks: int) -> NewProduct:
    return NewProduct(
        name="Shirt",
        price=1_000,
        category_ids=(1,),
        options=tuple(NewOption(name=f"o{n}", stock=s) for n, s in enumerate(stocks)),
    )


async def test_stock_goes_on_sale_only_after_the_rows_are_committed() -> None:
    events: list[str] = []
    stock = FakeStock()
    uow = FakeUnitOfWork(events, FakeProducts(events))
    reads = FakeReads()

    await services.register_product(lambda: uow, reads, stock, _new_product(5, 0, 2))

    assert events == ["add", "commit", "exit"]
    assert stock.calls == [(10, 5), (12, 2)], "options with no stock need no call"


async def test_a_failed_write_puts_nothing_on_sale() -> None:
    events: list[str] = []
    stock = FakeStock()
    uow = FakeUnitOfWork(events, FakeProducts(events, fail_on_add=True))
    with pytest.raises(RuntimeError):
        await services.register_product(lambda: uow, FakeReads(), stock, _new_product(5))
    assert "commit" not in events
    assert stock.calls == []


async def test_restocking_an_unknown_option_touches_no_stock() -> None:
    stock = FakeStock()
    with pytest.raises(NotFound):
        await services.restock(FakeReads(), stock, 7, 3, key="k")
    with pytest.raises(InvalidInput):
        await services.restock(FakeReads(), stock, 7, 0, key="k")
    assert stock.calls == []


async def test_restock_reports_the_new_availability() -> None:
    option = Option(id=7, product_id=1, name="o", price=1, stock_total=3, position=0)
    stock = FakeStock(units={7: 1})
    on_sale = await services.restock(FakeReads(options={7: option}), stock, 7, 4, key="k")
    assert (on_sale.option.id, on_sale.available) == (7, 5)


async def test_a_restock_retried_with_its_key_puts_the_units_on_sale_once() -> None:
    option = Option(id=7, product_id=1, name="o", price=1, stock_total=3, position=0)
    stock = FakeStock(units={7: 1})
    reads = FakeReads(options={7: option})
    first = await services.restock(reads, stock, 7, 4, key="restock-1")
    again = await services.restock(reads, stock, 7, 4, key="restock-1")
    assert first == again
    assert stock.units == {7: 5}


async def test_a_restock_past_the_stock_column_puts_nothing_on_sale() -> None:
    option = Option(id=7, product_id=1, name="o", price=1, stock_total=MAX_INT32 - 3, position=0)
    stock = FakeStock()
    with pytest.raises(InvalidInput, match="in total"):
        await services.restock(FakeReads(options={7: option}), stock, 7, 4, key="k")
    assert stock.calls == []
    await services.restock(FakeReads(options={7: option}), stock, 7, 3, key="k")


@pytest.mark.parametrize("key", ["", "   ", "k" * 201])
async def test_a_restock_needs_a_usable_key(key: str) -> None:
    option = Option(id=7, product_id=1, name="o", price=1, stock_total=3, position=0)
    stock = FakeStock()
    with pytest.raises(InvalidInput):
        await services.restock(FakeReads(options={7: option}), stock, 7, 4, key=key)
    assert stock.calls == []


def test_two_options_of_one_name_clash() -> None:
    with pytest.raises(Conflict, match="differ"):
        NewProduct(
            name="x", price=1, category_ids=(), options=(NewOption("a", 1), NewOption("a", 2))
        )


@pytest.mark.parametrize(
    "build",
    [
        lambda: NewProduct(name=" ", price=1, category_ids=(), options=(NewOption("a", 1),)),
        lambda: NewProduct(name="x", price=-1, category_ids=(), options=(NewOption("a", 1),)),
        lambda: NewProduct(name="x", price=1, category_ids=(), options=()),
        lambda: NewProduct(
            name="x", price=1, category_ids=(), options=(NewOption("a", 1),), images=("x",)
        ),
        lambda: NewOption("a", stock=-1),
        lambda: NewOption("a", stock=1, price=-5),
        lambda: NewOption("a", stock=1, price=MAX_PRICE + 1),
        lambda: NewProduct(name="x", price=2**62, category_ids=(), options=(NewOption("a", 1),)),
        lambda: NewProduct(
            name="x", price=1, category_ids=tuple(range(1, 40_001)), options=(NewOption("a", 1),)
        ),
    ],
)
def test_invalid_products_are_refused_before_any_write(build: Any) -> None:
    with pytest.raises(InvalidInput):
        build()


def test_an_option_without_a_price_costs_what_the_product_costs() -> None:
    product = NewProduct(
        name="x",
        price=700,
        category_ids=(),
        options=(NewOption("a", 1), NewOption("b", 1, price=900)),
    )
    assert [product.price_of(o) for o in product.options] == [700, 900]


@pytest.mark.parametrize("sort", list(Sort))
async def test_the_next_cursor_resumes_strictly_after_the_last_item(sort: Sort) -> None:
    reads = FakeReads(summaries=[_summary(n, popularity=10 - n) for n in range(1, 6)])

    first = await services.list_products(reads, sort=sort, limit=2)
    assert first.next_cursor is not None
    await services.list_products(reads, sort=sort, limit=2, cursor=first.next_cursor)

    after = reads.queries[-1].after
    expected = (
        NewestAfter(created_at=_summary(2).created_at, id=2)
        if sort is Sort.NEWEST
        else PopularAfter(popularity=8, id=2)
    )
    assert after == expected


async def test_a_cursor_from_the_other_order_is_refused() -> None:
    reads = FakeReads(summaries=[_summary(n) for n in range(1, 4)])
    newest = await services.list_products(reads, sort=Sort.NEWEST, limit=1)
    assert newest.next_cursor is not None
    with pytest.raises(MalformedRequest):
        await services.list_products(reads, sort=Sort.POPULAR, limit=1, cursor=newest.next_cursor)


async def test_an_empty_page_of_an_unknown_category_is_not_found() -> None:
    with pytest.raises(NotFound):
        await services.list_products(FakeReads(), sort=Sort.NEWEST, limit=5, category_id=3)


@dataclass
class FakeRanking:
    published: list[ProductSummary] | None = None

    async def replace(self, products: Sequence[ProductSummary]) -> None:
        self.published = list(products)

    async def top(self, limit: int) -> list[ProductSummary] | None:
        return None if self.published is None else self.published[:limit]

    async def forget(self, product_id: int) -> None:
        if self.published is not None:
            self.published = [p for p in self.published if p.id != product_id]


@dataclass
class FakeScores:
    result: int | None

    async def recompute(self, weights: PopularityWeights) -> int | None:
        return self.result


async def test_the_popular_list_falls_back_to_the_database_until_published() -> None:
    reads = FakeReads(summaries=[_summary(1), _summary(2)])
    ranking = FakeRanking()
    assert [p.id for p in await services.popular_products(ranking, reads, 5)] == [1, 2]
    ranking.published = [_summary(9)]
    assert [p.id for p in await services.popular_products(ranking, reads, 5)] == [9]


async def test_a_refresh_that_lost_the_lock_publishes_nothing() -> None:
    ranking = FakeRanking()
    reads = FakeReads(summaries=[_summary(1)])
    weights = PopularityWeights()
    skipped = await services.refresh_popularity(
        FakeScores(None), reads, ranking, weights=weights, list_size=10
    )
    assert (skipped, ranking.published) == (None, None)
    done = await services.refresh_popularity(
        FakeScores(4), reads, ranking, weights=weights, list_size=10
    )
    assert done == 4
    assert ranking.published == [_summary(1)]

"""The bulk load's values: a whole catalog to write in one go, and what the load wrote.

``CatalogBulkLoad`` (``ports.py``) takes a ``SampleCatalog`` and answers a ``LoadedCatalog``;
where the catalog comes from (the demo generator of ``shop seed`` and the benchmarks,
``entrypoints/cli/sample_data.py``) is not the domain's concern.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SampleCategory:
    key: int  # index in SampleCatalog.categories; parents come first
    name: str
    parent_key: int | None
    position: int


@dataclass(frozen=True, slots=True)
class SampleOption:
    name: str
    price: int
    stock: int


@dataclass(frozen=True, slots=True)
class SampleProduct:
    name: str
    description: str
    price: int
    created_at: datetime.datetime
    category_keys: tuple[int, ...]
    options: tuple[SampleOption, ...]
    images: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SampleCatalog:
    categories: list[SampleCategory]
    products: list[SampleProduct]

    @property
    def option_count(self) -> int:
        return sum(len(product.options) for product in self.products)


@dataclass(frozen=True, slots=True)
class LoadedCatalog:
    """What a bulk load wrote: ids, and each option's units for putting them on sale."""

    category_ids: list[int]
    product_ids: list[int]
    option_units: list[tuple[int, int]]

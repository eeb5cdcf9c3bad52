"""The catalog's values, re-exported on purpose: one import path for the whole module.

Each concept has its own file: the category tree (``categories.py``), products and their
options and images (``products.py``), listings and popularity (``listing.py``), and the input
limits every value checks (``checks.py``).
"""

from __future__ import annotations

from shop.domain.catalog.categories import (
    Category,
    CategoryChange,
    CategoryNode,
    CategoryTree,
    DeleteMode,
    NewCategory,
)
from shop.domain.catalog.checks import (
    MAX_DESCRIPTION_LENGTH,
    MAX_IMAGES_PER_PRODUCT,
    MAX_NAME_LENGTH,
    MAX_OPTIONS_PER_PRODUCT,
    MAX_PRODUCT_NAME_LENGTH,
    MAX_URL_LENGTH,
    check_name,
    check_price,
    check_stock_total,
    check_url,
)
from shop.domain.catalog.listing import (
    ListingQuery,
    NewestAfter,
    PopularAfter,
    PopularityWeights,
    Position,
    ProductSummary,
    Sort,
)
from shop.domain.catalog.products import (
    CreatedProduct,
    Image,
    NewOption,
    NewProduct,
    Option,
    OptionOnSale,
    Product,
    ProductChange,
    ProductDetail,
)

__all__ = [
    "MAX_DESCRIPTION_LENGTH",
    "MAX_IMAGES_PER_PRODUCT",
    "MAX_NAME_LENGTH",
    "MAX_OPTIONS_PER_PRODUCT",
    "MAX_PRODUCT_NAME_LENGTH",
    "MAX_URL_LENGTH",
    "Category",
    "CategoryChange",
    "CategoryNode",
    "CategoryTree",
    "CreatedProduct",
    "DeleteMode",
    "Image",
    "ListingQuery",
    "NewCategory",
    "NewOption",
    "NewProduct",
    "NewestAfter",
    "Option",
    "OptionOnSale",
    "PopularAfter",
    "PopularityWeights",
    "Position",
    "Product",
    "ProductChange",
    "ProductDetail",
    "ProductSummary",
    "Sort",
    "check_name",
    "check_price",
    "check_stock_total",
    "check_url",
]

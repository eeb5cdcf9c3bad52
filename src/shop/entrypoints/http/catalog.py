"""Catalog routes: public reads (no token needed) and admin writes (``requires_admin``).

Each handler parses, makes one use-case call and renders; domain errors travel to the error
mapping untouched (404 unknown, 409 conflicting state, 422 invalid values, 400 bad cursor).
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, HeaderParameter, JSONBody, QueryParameter

from shop.bootstrap import CatalogPorts, Container
from shop.domain.catalog import services
from shop.domain.catalog.model import Sort
from shop.domain.idempotency import MAX_IDEMPOTENCY_KEY_LENGTH
from shop.domain.limits import MAX_ID
from shop.domain.paging import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT
from shop.entrypoints.http.auth import requires_admin
from shop.entrypoints.http.bounds import NOT_BLANK, PathId
from shop.entrypoints.http.catalog_schemas import (
    CategoryIn,
    CategoryNodeOut,
    CategoryOut,
    CategoryPatch,
    ImageIn,
    ImageOut,
    OptionIn,
    OptionOut,
    PopularProducts,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatch,
    ProductSummaryOut,
    RestockIn,
)
from shop.entrypoints.http.openapi import raises

Limit = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"page size, 1 to {MAX_LIMIT}")
]
RestockKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=NOT_BLANK,
        description="Client-chosen key; repeating the restock with it adds the units once.",
    ),
]
Cursor = Annotated[
    str | None,
    QueryParameter(
        description="next_cursor of the previous page; omit for the first page",
        max_length=MAX_CURSOR_LENGTH,
    ),
]


def provide_catalog(container: NamedDependency[Container]) -> CatalogPorts:
    return container.catalog


CATALOG_DEPENDENCIES = {
    "catalog": Provide(provide_catalog, sync_to_thread=False),
}


class CategoryController(Controller):
    path = "/api/categories"
    tags = ["catalog"]
    dependencies = CATALOG_DEPENDENCIES

    @get(operation_id="ListCategories", exclude_from_auth=True)
    async def tree(self, catalog: NamedDependency[CatalogPorts]) -> list[CategoryNodeOut]:
        """The whole tree: top-level categories with their children, ordered by position."""
        roots = await services.category_tree(catalog.reads)
        return [CategoryNodeOut.from_domain(node) for node in roots]


class AdminCategoryController(Controller):
    path = "/api/admin/categories"
    tags = ["catalog admin"]
    guards = [requires_admin]
    dependencies = CATALOG_DEPENDENCIES

    @post(operation_id="CreateCategory")
    async def create(
        self, data: JSONBody[CategoryIn], catalog: NamedDependency[CatalogPorts]
    ) -> CategoryOut:
        category = await services.create_category(catalog.unit_of_work, data.to_domain())
        return CategoryOut.from_domain(category)

    @patch("/{category_id:int}", operation_id="UpdateCategory", responses=raises(409))
    async def update(
        self,
        category_id: PathId,
        data: JSONBody[CategoryPatch],
        catalog: NamedDependency[CatalogPorts],
    ) -> CategoryOut:
        """Rename, reorder, or move (``parent_id``; null = top level). A move under its own
        subtree is a 409."""
        category = await services.change_category(
            catalog.unit_of_work, category_id, data.to_domain()
        )
        return CategoryOut.from_domain(category)

    @delete("/{category_id:int}", operation_id="DeleteCategory", responses=raises(409))
    async def remove(
        self,
        category_id: PathId,
        catalog: NamedDependency[CatalogPorts],
        cascade: Annotated[
            bool,
            QueryParameter(
                description="delete the whole subtree; products are unlinked, not deleted"
            ),
        ] = False,
        move_to: Annotated[
            int | None,
            QueryParameter(
                ge=1, le=MAX_ID, description="move sub-categories and products here, then delete"
            ),
        ] = None,
    ) -> None:
        """An empty category goes; a non-empty one is a 409 unless ``cascade`` or ``move_to``
        says what happens to its contents."""
        mode = services.delete_mode(cascade=cascade, move_to=move_to)
        await services.delete_category(
            catalog.unit_of_work, category_id, mode=mode, move_to=move_to
        )


class ProductController(Controller):
    path = "/api/products"
    tags = ["catalog"]
    dependencies = CATALOG_DEPENDENCIES

    @get(operation_id="ListProducts", exclude_from_auth=True, responses=raises(404))
    async def listing(
        self,
        catalog: NamedDependency[CatalogPorts],
        sort: FromQuery[Sort] = Sort.NEWEST,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        category_id: Annotated[
            int | None,
            QueryParameter(ge=1, le=MAX_ID, description="this category and all its descendants"),
        ] = None,
    ) -> ProductPage:
        """Keyset pages, newest or most popular first, ties broken by id."""
        page = await services.list_products(
            catalog.reads, sort=sort, limit=limit, category_id=category_id, cursor=cursor
        )
        return ProductPage(
            items=[ProductSummaryOut.from_domain(item) for item in page.items],
            next_cursor=page.next_cursor,
        )

    @get("/popular", operation_id="PopularProducts", exclude_from_auth=True)
    async def popular(
        self, catalog: NamedDependency[CatalogPorts], limit: Limit = 10
    ) -> PopularProducts:
        """The global top list, as published by the last popularity refresh."""
        items = await services.popular_products(catalog.ranking, catalog.reads, limit)
        return PopularProducts(items=[ProductSummaryOut.from_domain(item) for item in items])

    @get("/{product_id:int}", operation_id="GetProduct", exclude_from_auth=True)
    async def detail(
        self,
        product_id: PathId,
        catalog: NamedDependency[CatalogPorts],
    ) -> ProductOut:
        """With each option's units still available, its images and categories."""
        detail = await services.product_detail(catalog.reads, catalog.stock, product_id)
        return ProductOut.from_domain(detail)


class AdminProductController(Controller):
    path = "/api/admin"
    tags = ["catalog admin"]
    guards = [requires_admin]
    dependencies = CATALOG_DEPENDENCIES

    @post("/products", operation_id="RegisterProduct", responses=raises(409))
    async def register(
        self,
        data: JSONBody[ProductIn],
        catalog: NamedDependency[CatalogPorts],
    ) -> ProductOut:
        """Each option's ``stock`` goes on sale at once through the stock port."""
        detail = await services.register_product(
            catalog.unit_of_work, catalog.reads, catalog.stock, data.to_domain()
        )
        return ProductOut.from_domain(detail)

    @patch("/products/{product_id:int}", operation_id="UpdateProduct", responses=raises(409))
    async def update(
        self,
        product_id: PathId,
        data: JSONBody[ProductPatch],
        catalog: NamedDependency[CatalogPorts],
    ) -> ProductOut:
        detail = await services.change_product(
            catalog.unit_of_work, catalog.reads, catalog.stock, product_id, data.to_domain()
        )
        return ProductOut.from_domain(detail)

    @delete("/products/{product_id:int}", operation_id="DeleteProduct", responses=raises(409))
    async def remove(self, product_id: PathId, catalog: NamedDependency[CatalogPorts]) -> None:
        """Gone with its options, images and wishes; a 409 once it has been ordered. Buyers
        whose purchase of it was in flight get a 409 naming the option; a 503 (Retry-After)
        if purchases kept its rows busy for the whole wait."""
        await services.delete_product(catalog.unit_of_work, catalog.ranking, product_id)

    @post("/products/{product_id:int}/options", operation_id="AddOption", responses=raises(409))
    async def add_option(
        self,
        product_id: PathId,
        data: JSONBody[OptionIn],
        catalog: NamedDependency[CatalogPorts],
    ) -> OptionOut:
        on_sale = await services.add_option(
            catalog.unit_of_work, catalog.reads, catalog.stock, product_id, data.to_domain()
        )
        return OptionOut.from_domain(on_sale)

    @post("/options/{option_id:int}/restock", operation_id="RestockOption", status_code=200)
    async def restock(
        self,
        option_id: PathId,
        data: JSONBody[RestockIn],
        idempotency_key: RestockKey,
        catalog: NamedDependency[CatalogPorts],
    ) -> OptionOut:
        """The units are on sale when this returns: no separate initialize step. Safe to
        retry with the same ``Idempotency-Key``: the units go on sale once and the option is
        answered as it is now; the same key with another body is a 422."""
        on_sale = await services.restock(
            catalog.reads, catalog.stock, option_id, data.units, key=idempotency_key
        )
        return OptionOut.from_domain(on_sale)

    @post("/products/{product_id:int}/images", operation_id="AddImage")
    async def add_image(
        self,
        product_id: PathId,
        data: JSONBody[ImageIn],
        catalog: NamedDependency[CatalogPorts],
    ) -> ImageOut:
        """Appended after the existing images unless ``position`` says where."""
        image = await services.add_image(catalog.unit_of_work, product_id, data.url, data.position)
        return ImageOut.from_domain(image)

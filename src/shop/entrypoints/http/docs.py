"""The interactive API docs (Swagger UI), served entirely by the shop.

Litestar's Swagger plugin loads its JavaScript and CSS from a CDN by default, so on a machine
without internet ``/docs`` is a blank page. The assets come instead from the
``swagger-ui-bundle-v2`` wheel (Swagger UI 5, which renders OpenAPI 3.1) and are served under
``/docs/assets/``: opening the docs makes no request that leaves the shop.
"""

from __future__ import annotations

from typing import Any

import swagger_ui_bundle
from litestar import MediaType, Request, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

from shop.entrypoints.http.openapi import openapi_document

ASSETS_PATH = "/docs/assets"

SWAGGER_UI = SwaggerRenderPlugin(
    js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
    css_url=f"{ASSETS_PATH}/swagger-ui.css",
    standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
    favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    path="/swagger",
)


def docs_assets() -> Router:
    """Swagger UI's files, straight from the installed wheel (cached: they change only with
    the package version)."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[swagger_ui_bundle.swagger_ui_path],
        name="docs-assets",
        cache_control=CacheControlHeader(max_age=3600, public=True),
        opt={"exclude_from_auth": True},
        include_in_schema=False,
    )


@get(
    "/docs",
    operation_id="ApiDocs",
    include_in_schema=False,
    media_type=MediaType.HTML,
    exclude_from_auth=True,
)
async def docs(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Interactive API docs (Swagger UI) rendered from the live OpenAPI schema."""
    schema = openapi_document(request.app)
    return Response(SWAGGER_UI.render(request, schema), media_type=MediaType.HTML)

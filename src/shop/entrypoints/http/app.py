"""The HTTP application factory (``create_app``): routes, dependencies, errors, OpenAPI.

Importing this module touches no server. Connections are made in the lifespan, or handed in
ready-made by tests, so a test run shares one engine across many app instances.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.types import ControllerRouterHandler

from shop import __version__
from shop.adapters.security import JwtAccessTokens
from shop.bootstrap import (
    UNTRACED_PATHS,
    Container,
    jwt_secret_of,
    resolve_services,
    start_tracing,
    tracing_requested,
)
from shop.config import Settings, load_settings
from shop.domain.observation.ports import SaleObserver
from shop.entrypoints.http.auth import auth_middleware, provide_principal
from shop.entrypoints.http.body_guard import body_guard
from shop.entrypoints.http.catalog import (
    AdminCategoryController,
    AdminProductController,
    CategoryController,
    ProductController,
)
from shop.entrypoints.http.dashboard import AdminPageController, DashboardController
from shop.entrypoints.http.docs import SWAGGER_UI, docs, docs_assets
from shop.entrypoints.http.drops import AdminDropController, DropController
from shop.entrypoints.http.errors import EXCEPTION_HANDLERS
from shop.entrypoints.http.health import HealthController
from shop.entrypoints.http.identity import AuthController, change_password, get_me
from shop.entrypoints.http.metrics import metrics
from shop.entrypoints.http.openapi import COMPONENTS, TruthfulOpenAPIJson, document_operations
from shop.entrypoints.http.orders import AdminOrderController, OrderController
from shop.entrypoints.http.payments import (
    AdminPaymentController,
    PaymentController,
    SandboxCheckoutController,
    WebhookController,
)
from shop.entrypoints.http.query_guard import query_guard
from shop.entrypoints.http.request_log import request_log_middleware
from shop.entrypoints.http.throttle import ThrottleMiddleware
from shop.entrypoints.http.whoami import whoami
from shop.entrypoints.http.wishes import WishController
from shop.entrypoints.workers import republish_waiting_rooms
from shop.logs import configure_logging, get_logger

_log = get_logger("shop.drops.room")


def provide_container(state: State) -> Container:
    container: Container = state.container
    return container


def route_handlers(settings: Settings) -> list[ControllerRouterHandler]:
    """Every controller of the shop; each domain module contributes its own. The sandbox's
    checkout page exists only while the sandbox is the configured gateway."""
    sandbox: list[ControllerRouterHandler] = (
        [SandboxCheckoutController] if settings.payment_gateway == "sandbox" else []
    )
    return [
        HealthController,
        metrics,
        docs,
        docs_assets(),
        AuthController,
        get_me,
        change_password,
        whoami,
        CategoryController,
        AdminCategoryController,
        ProductController,
        AdminProductController,
        WishController,
        OrderController,
        AdminOrderController,
        DropController,
        AdminDropController,
        DashboardController,
        AdminPageController,
        PaymentController,
        WebhookController,
        AdminPaymentController,
        *sandbox,
    ]


async def _republish_rooms(container: Container) -> None:
    """So that an unknown drop is 404 from the first request, not 503 until the worker's
    first run (``workers.republish_waiting_rooms``). A failure only delays that."""
    try:
        await republish_waiting_rooms(container)
    except Exception as exc:
        _log.warning("could not republish the waiting rooms at start-up", error=str(exc))


def create_app(
    container: Container | None = None,
    *,
    settings: Settings | None = None,
    extra_route_handlers: Sequence[ControllerRouterHandler] = (),
    tracing: bool | None = None,
) -> Litestar:
    """Build the app. Without a container, the lifespan builds one from the environment.

    ``tracing`` (default: asked for by the ``OTEL_*`` variables, see adapters/tracing.py)
    adds a server span per request; the app then starts the OTLP exporter itself unless a
    container (and so a caller who set up its own tracer provider) is handed in.
    """
    own_settings = container.settings if container is not None else (settings or load_settings())
    configure_logging(own_settings.log_level, json=own_settings.log_json)
    traced = tracing_requested() if tracing is None else tracing
    if traced and container is None:
        start_tracing()
    # Tokens are verified with the same secret the container signs with; building the verifier
    # here (not in the lifespan) lets the middleware exist before the first request.
    tokens = (
        container.access_tokens
        if container is not None
        else JwtAccessTokens(
            jwt_secret_of(own_settings),
            ttl_seconds=own_settings.access_token_ttl,
            remember=own_settings.access_token_cache,
        )
    )

    # The throttle runs before authentication, so that floods of bad tokens are counted too.
    throttle = [ThrottleMiddleware(own_settings, tokens)] if own_settings.rate_limit_enabled else []

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if container is not None:
            yield
            return
        resolved, servers = resolve_services(own_settings)
        built = Container.build(resolved, tracing=traced)
        app.state.container = built
        await _republish_rooms(built)
        try:
            yield
        finally:
            await built.close()
            servers.stop()

    app = Litestar(
        route_handlers=[*route_handlers(own_settings), *extra_route_handlers],
        lifespan=[lifespan],
        state=State({"container": container} if container is not None else {}),
        dependencies={
            # One container for the app's life (set once, in the lifespan): computed once.
            "container": Provide(provide_container, sync_to_thread=False, use_cache=True),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        middleware=[
            *throttle,
            auth_middleware(tokens),
            query_guard,
            body_guard(own_settings.max_body_bytes),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[
            OpenTelemetryPlugin(
                OpenTelemetryConfig(exclude=UNTRACED_PATHS, exclude_spans=["receive", "send"])
            )
        ]
        if traced
        else [],
        request_max_body_size=own_settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="shop",
            version=__version__,
            description="First-come-first-served store backend.",
            path="/schema",
            render_plugins=[SWAGGER_UI, TruthfulOpenAPIJson()],
            components=COMPONENTS,
        ),
        debug=False,
    )
    document_operations(app)

    def observer() -> SaleObserver | None:
        built: Container | None = getattr(app.state, "container", None)
        return None if built is None else built.observer

    # Wrapped around the whole ASGI handler (not as route middleware) so that unmatched routes
    # (404, 405) get a request id, an access-log line, a duration and security headers too.
    app.asgi_handler = request_log_middleware(
        app.asgi_handler,
        observer,
        sample=own_settings.access_log_sample,
        slow_seconds=own_settings.access_log_slow_ms / 1000,
    )
    return app

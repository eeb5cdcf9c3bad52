"""Composition root: settings in, wired adapters out. The only module that names concrete adapters.

Entry points (HTTP app, CLI, SAQ worker) call ``resolve_services`` once to know where
PostgreSQL and Redis are (starting the embedded pair when no URL is configured), then build a
``Container`` that owns every connection and closes them in one place.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis
from saq import Queue
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shop.adapters.admission_tokens import HmacAdmissionTokens
from shop.adapters.batched_counter import BatchedRequestCounter
from shop.adapters.clock import SystemClock
from shop.adapters.db.catalog import SqlCatalogUnitOfWork
from shop.adapters.db.catalog_bulk import PostgresCatalogBulkLoad
from shop.adapters.db.catalog_listing import SqlCatalogReads
from shop.adapters.db.catalog_popularity import SqlPopularityScores
from shop.adapters.db.drops import SqlDrops
from shop.adapters.db.engine import make_engine, make_sessionmaker
from shop.adapters.db.identity import SqlIdentityUnitOfWork
from shop.adapters.db.options_on_sale import RecentlySoldOptions
from shop.adapters.db.orders import SqlOrders
from shop.adapters.db.payments import SqlPayments
from shop.adapters.db.purchase_tally import OrderLineTally
from shop.adapters.db.stock import PostgresStock
from shop.adapters.db.stock_ledger import SqlOrderStates
from shop.adapters.db.wishes import SqlWishes
from shop.adapters.drops_on_sale import RoomDropsOnSale
from shop.adapters.embedded import EmbeddedPostgres, EmbeddedRedis
from shop.adapters.metrics.prometheus import PrometheusExposition, PrometheusObserver
from shop.adapters.metrics.prometheus import (
    prepare_multiprocess_dir as prepare_multiprocess_dir,  # for shop up
)
from shop.adapters.metrics.prometheus import serve_worker_metrics as serve_worker_metrics
from shop.adapters.outages import dependency_of as dependency_of
from shop.adapters.payments.sandbox import SANDBOX_WEBHOOK_JOB as SANDBOX_WEBHOOK_JOB
from shop.adapters.payments.sandbox import SandboxGateway as SandboxGateway
from shop.adapters.payments.webhook_delivery import HttpWebhookDelivery
from shop.adapters.queue import EXPIRE_ORDER_JOB as EXPIRE_ORDER_JOB  # for the worker
from shop.adapters.queue import QUEUE_NAME as QUEUE_NAME
from shop.adapters.queue import job_queue_on
from shop.adapters.queue import make_job_queue as make_job_queue
from shop.adapters.redis.popularity import RedisPopularRanking
from shop.adapters.redis.ratelimit import RedisRequestCounter
from shop.adapters.redis.sale_snapshots import RedisSaleSnapshots
from shop.adapters.redis.stock_counter import RedisCounterStock
from shop.adapters.redis.stock_redlock import RedlockStock, redlock_masters
from shop.adapters.redis.strategy import SwitchableStock
from shop.adapters.redis.waiting_room import RedisWaitingRoom
from shop.adapters.redis.waiting_room_stock import RoomStock
from shop.adapters.security import Argon2PasswordHasher, JwtAccessTokens
from shop.adapters.stock_home import StockStrategy
from shop.adapters.tracing import UNTRACED_PATHS as UNTRACED_PATHS
from shop.adapters.tracing import TracedStock
from shop.adapters.tracing import start_tracing as start_tracing  # for the entry points
from shop.adapters.tracing import traced_job as traced_job
from shop.adapters.tracing import tracing_requested as tracing_requested
from shop.adapters.tracing import untraced_job as untraced_job
from shop.config import Settings
from shop.domain.catalog import services as catalog_services
from shop.domain.catalog.model import PopularityWeights
from shop.domain.catalog.ports import (
    CatalogBulkLoad,
    CatalogReads,
    CatalogUnitOfWork,
    CatalogUnitOfWorkFactory,
    PopularityScores,
    PopularRanking,
)
from shop.domain.clock import Clock
from shop.domain.drops.ports import AdmissionTokens, Drops
from shop.domain.drops.services import DropSales
from shop.domain.identity.ports import (
    AccessTokens,
    IdentityUnitOfWork,
    PasswordHasher,
    RequestCounter,
)
from shop.domain.observation.ports import (
    DropsOnSale,
    MetricsExposition,
    OptionsOnSale,
    PurchaseTally,
    SaleObserver,
    SaleSnapshots,
)
from shop.domain.orders import services as order_services
from shop.domain.orders.model import Order, OrderCursor, OrderPage, OrderRules, Placed, PlaceOrder
from shop.domain.orders.ports import Orders
from shop.domain.payments import services as payment_services
from shop.domain.payments.model import GatewayEvent
from shop.domain.payments.ports import PaymentGateway, Payments
from shop.domain.stock import services as stock_services
from shop.domain.stock.model import OptionStock, SweepOutcome
from shop.domain.stock.ports import OrderStates, StockOperations, StockReservation
from shop.domain.wishes.ports import Wishes


@dataclass
class EmbeddedServers:
    """The embedded servers this process joined; ``stop`` leaves them (the last one out stops)."""

    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()


def resolve_services(settings: Settings) -> tuple[Settings, EmbeddedServers]:
    """Fill in missing URLs by starting (or joining) the embedded servers under ``data_dir``."""
    servers = EmbeddedServers()
    changes: dict[str, Any] = {}
    if settings.redis_url is None:
        servers.redis = EmbeddedRedis(settings.data_path)
        changes["redis_url"] = servers.redis.start()
    if settings.database_url is None:
        servers.postgres = EmbeddedPostgres(settings.data_path)
        changes["database_url"] = servers.postgres.start()
    if changes and settings.jwt_secret is None:
        changes["jwt_secret"] = local_jwt_secret(settings.data_path)
    if changes and settings.payment_webhook_secret is None:
        changes["payment_webhook_secret"] = local_secret(settings.data_path, "webhook_secret")
    return msgspec.structs.replace(settings, **changes), servers


def require_urls(settings: Settings) -> tuple[str, str]:
    """The (database, redis) URLs of settings that went through ``resolve_services``."""
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("resolve_services() must run first: database or Redis URL is unset")
    return settings.database_url, settings.redis_url


def local_jwt_secret(data_dir: Path) -> str:
    """A per-installation secret for the zero-setup run, kept beside the embedded data.

    Persisted so that tokens survive a restart and every worker process signs alike; never
    committed anywhere. Production must set SHOP_JWT_SECRET (config refuses to start otherwise).
    """
    return local_secret(data_dir, "jwt_secret")


def local_secret(data_dir: Path, name: str) -> str:
    """A random secret kept in ``data_dir/name`` (created once, mode 0600)."""
    path = data_dir.resolve() / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def webhook_secret_of(settings: Settings) -> str:
    """The payment webhook's signing secret: configured, or the zero-setup local one (config
    refuses prod without SHOP_PAYMENT_WEBHOOK_SECRET)."""
    if settings.payment_webhook_secret is not None:
        return settings.payment_webhook_secret
    return local_secret(settings.data_path, "webhook_secret")


def jwt_secret_of(settings: Settings) -> str:
    if settings.jwt_secret is not None:
        return settings.jwt_secret
    return local_jwt_secret(settings.data_path)


@dataclass(frozen=True)
class StockDeps:
    """What a stock strategy may be built from."""

    settings: Settings
    engine: AsyncEngine
    redis: Redis


StockFactory = Callable[[StockDeps], StockStrategy]


def _redlock(deps: StockDeps) -> RedlockStock:
    settings = deps.settings
    urls = settings.redlock_urls or (require_urls(settings)[1],)
    return RedlockStock(
        deps.engine,
        redlock_masters(urls, wait=settings.redlock_wait, lease=settings.redlock_lease),
        lease=settings.redlock_lease,
        wait=settings.redlock_wait,
        retry_delay=settings.redlock_retry_delay,
    )


def _counter(deps: StockDeps) -> RedisCounterStock:
    return RedisCounterStock(
        deps.engine,
        deps.redis,
        wait=deps.settings.stock_wait,
        recovery_grace=deps.settings.stock_recovery_grace,
    )


# One line per strategy: adding a strategy is one adapter module plus one entry here.
# The order is the benchmark's column order.
STOCK_STRATEGIES: dict[str, StockFactory] = {
    "counter": _counter,
    "redlock": _redlock,
    "db": lambda deps: PostgresStock(deps.engine),
}


def build_stock(name: str, deps: StockDeps) -> StockStrategy:
    try:
        factory = STOCK_STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STOCK_STRATEGIES))
        raise ValueError(f"unknown stock strategy {name!r} (known: {known})") from None
    return factory(deps)


def build_switchable_stock(deps: StockDeps) -> SwitchableStock:
    """Every registered strategy behind one port that follows the live switch."""
    return SwitchableStock(
        strategies={name: build_stock(name, deps) for name in STOCK_STRATEGIES},
        engine=deps.engine,
        redis=deps.redis,
        default=deps.settings.stock_strategy,
        wait=deps.settings.stock_wait,
    )


def order_rules(settings: Settings) -> OrderRules:
    return OrderRules(
        card_payment_ttl=timedelta(seconds=settings.card_payment_ttl),
        bank_transfer_ttl=timedelta(seconds=settings.bank_transfer_ttl),
        refund_window=timedelta(seconds=settings.refund_window),
        max_line_quantity=settings.max_line_quantity,
        max_order_lines=settings.max_order_lines,
        purchase_limit_per_option=settings.purchase_limit_per_option,
    )


@dataclass(frozen=True)
class PaymentDeps:
    """What a payment gateway may be built from."""

    settings: Settings
    queue: Queue
    payments: Payments


# One line per gateway: a real provider is one adapter module plus one entry here (and its
# name in config.PaymentGatewayName).
PAYMENT_GATEWAYS: dict[str, Callable[[PaymentDeps], PaymentGateway]] = {
    "sandbox": lambda deps: SandboxGateway(
        deps.queue, deps.payments, public_url=deps.settings.public_url
    ),
}


@dataclass(frozen=True)
class PaymentCases:
    """The payment use cases bound once to their ports (see ``OrderCases``)."""

    payments: Payments
    gateway: PaymentGateway
    orders: Orders
    stock: StockReservation
    clock: Clock
    rules: OrderRules
    currency: str

    async def start(self, order_id: uuid.UUID, *, user_id: uuid.UUID) -> payment_services.Started:
        return await payment_services.start_payment(
            order_id,
            user_id=user_id,
            currency=self.currency,
            payments=self.payments,
            gateway=self.gateway,
            clock=self.clock,
        )

    async def accept(self, event: GatewayEvent) -> payment_services.Outcome:
        return await payment_services.accept_event(
            event,
            payments=self.payments,
            gateway=self.gateway,
            orders=self.orders,
            stock=self.stock,
            clock=self.clock,
        )

    async def resend_refunds(self, after: timedelta) -> int:
        return await payment_services.resend_pending_refunds(
            payments=self.payments, gateway=self.gateway, clock=self.clock, after=after
        )

    async def refund(self, order_id: uuid.UUID, *, user_id: uuid.UUID) -> Order:
        return await payment_services.request_refund(
            order_id,
            user_id=user_id,
            payments=self.payments,
            gateway=self.gateway,
            clock=self.clock,
            rules=self.rules,
        )

    async def cancel(self, order_id: uuid.UUID, *, user_id: uuid.UUID) -> Order:
        return await payment_services.cancel_order(
            order_id,
            user_id=user_id,
            payments=self.payments,
            gateway=self.gateway,
            orders=self.orders,
            stock=self.stock,
            clock=self.clock,
        )


@dataclass(frozen=True)
class CatalogPorts:
    """What catalog use cases are wired with."""

    unit_of_work: CatalogUnitOfWorkFactory
    reads: CatalogReads
    scores: PopularityScores
    ranking: PopularRanking
    stock: StockReservation
    bulk: CatalogBulkLoad


@dataclass(frozen=True)
class OrderCases:
    """The order use cases bound once to their ports and to the rules built from settings.

    An entrypoint (a controller, a job) parses its input and calls one of these; it never
    re-lists the ports a use case needs, and never turns settings into rule parameters.
    """

    orders: Orders
    stock: StockReservation
    clock: Clock
    rules: OrderRules
    observer: SaleObserver
    # The drops a purchase may fall in (their terms, admissions, waiting rooms).
    sales: DropSales | None = None

    async def place(self, cmd: PlaceOrder) -> Placed:
        return await order_services.place_order(
            cmd,
            rules=self.rules,
            stock=self.stock,
            orders=self.orders,
            clock=self.clock,
            sales=self.sales,
            observer=self.observer,
        )

    async def page(self, user_id: uuid.UUID, *, limit: int, after: OrderCursor | None) -> OrderPage:
        return await order_services.list_orders(
            user_id, orders=self.orders, limit=limit, after=after
        )

    async def get(self, order_id: uuid.UUID, *, user_id: uuid.UUID) -> Order:
        return await order_services.get_order(order_id, user_id=user_id, orders=self.orders)

    async def ship(self, order_id: uuid.UUID) -> Order:
        return await order_services.ship_order(order_id, orders=self.orders, clock=self.clock)

    async def deliver(self, order_id: uuid.UUID) -> Order:
        return await order_services.deliver_order(order_id, orders=self.orders, clock=self.clock)

    async def expire(self, order_id: uuid.UUID) -> bool:
        return await order_services.expire_order(
            order_id, orders=self.orders, stock=self.stock, clock=self.clock
        )

    async def expire_due(self) -> int:
        return await order_services.expire_due_orders(
            orders=self.orders, stock=self.stock, clock=self.clock
        )

    async def release_closed(self) -> int:
        return await order_services.release_stock_of_closed_orders(
            orders=self.orders, stock=self.stock, clock=self.clock
        )


@dataclass(frozen=True)
class StockCases:
    """The stock jobs' use cases bound to their ports, the clock and the reservation timeout."""

    stock: StockReservation
    operations: StockOperations
    orders: OrderStates
    clock: Clock
    pending_timeout: float

    async def sweep(self) -> SweepOutcome:
        return await stock_services.sweep_reservations(
            stock=self.stock,
            operations=self.operations,
            orders=self.orders,
            pending_timeout=self.pending_timeout,
            clock=self.clock,
        )

    async def reconcile(self, *, fix: bool) -> Sequence[OptionStock]:
        return await stock_services.reconcile_stock(
            stock=self.stock,
            operations=self.operations,
            orders=self.orders,
            pending_timeout=self.pending_timeout,
            clock=self.clock,
            fix=fix,
        )


def popularity_weights(settings: Settings) -> PopularityWeights:
    return PopularityWeights(
        units=settings.popularity_units_weight,
        wish=settings.popularity_wish_weight,
        wish_window_seconds=settings.popularity_wish_window,
    )


@dataclass(frozen=True)
class ObservationPorts:
    """What the metrics endpoint, the dashboard and the snapshot job are wired with."""

    observer: SaleObserver
    snapshots: SaleSnapshots
    options: OptionsOnSale
    # Issue 14 (drops) plugs its adapter in here; it also names the drops' options.
    drops: DropsOnSale
    tally: PurchaseTally
    exposition: MetricsExposition


@dataclass
class Container:
    """Every long-lived connection of one process, built once and closed once."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    access_tokens: AccessTokens
    stock: StockReservation
    # The SAQ queue jobs are enqueued on (the worker consumes it), on the ``redis`` client.
    queue: Queue
    orders: Orders
    clock: Clock
    password_hasher: PasswordHasher
    identity_uow: Callable[[], IdentityUnitOfWork]
    request_counter: RequestCounter
    # Users and anonymous callers (not sign-in): ``request_counter`` batched per tick (or
    # itself, if batching is off).
    batched_request_counter: RequestCounter
    stock_operations: StockOperations
    order_states: OrderStates
    payments: Payments
    gateway: PaymentGateway
    # How the sandbox's jobs POST their signed events to this shop's webhook.
    webhook_delivery: HttpWebhookDelivery
    # Drops: the repository, the Redis waiting room, the admission signer. ``stock`` above is
    # the stock port wrapped in ``RoomStock`` so every change tells the rooms what is left.
    drops: Drops
    room: RedisWaitingRoom
    admissions: AdmissionTokens

    @cached_property
    def drop_sales(self) -> DropSales:
        return DropSales(drops=self.drops, admissions=self.admissions, room=self.room)

    @cached_property
    def order_rules(self) -> OrderRules:
        """Built once per container (it is on every purchase's path), not per request."""
        return order_rules(self.settings)

    @classmethod
    def build(cls, settings: Settings, *, tracing: bool | None = None) -> Container:
        """``tracing`` (default: asked for by the ``OTEL_*`` variables) wraps the stock port
        in spans; the process must have called ``start_tracing`` (or set its own provider)."""
        database_url, redis_url = require_urls(settings)
        engine = make_engine(
            database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        redis = Redis.from_url(
            redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        queue = job_queue_on(redis)
        sessionmaker = make_sessionmaker(engine)
        stock = build_switchable_stock(StockDeps(settings, engine, redis))
        payments = SqlPayments(engine)
        room = RedisWaitingRoom(redis)
        request_counter = RedisRequestCounter(redis)
        traced = tracing_requested() if tracing is None else tracing
        port: StockReservation = TracedStock(stock, lambda: stock.name) if traced else stock
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            stock=RoomStock(port, room),
            stock_operations=stock,
            drops=SqlDrops(engine),
            room=room,
            admissions=HmacAdmissionTokens(jwt_secret_of(settings)),
            order_states=SqlOrderStates(engine),
            queue=queue,
            orders=SqlOrders(engine),
            clock=SystemClock(),
            access_tokens=JwtAccessTokens(
                jwt_secret_of(settings),
                ttl_seconds=settings.access_token_ttl,
                remember=settings.access_token_cache,
            ),
            password_hasher=Argon2PasswordHasher(
                time_cost=settings.password_hash_time_cost,
                memory_kib=settings.password_hash_memory_kib,
            ),
            identity_uow=partial(SqlIdentityUnitOfWork, sessionmaker),
            request_counter=request_counter,
            batched_request_counter=(
                BatchedRequestCounter(
                    request_counter, tick_seconds=settings.rate_limit_flush_ms / 1000
                )
                if settings.rate_limit_flush_ms
                else request_counter
            ),
            payments=payments,
            gateway=PAYMENT_GATEWAYS[settings.payment_gateway](
                PaymentDeps(settings, queue, payments)
            ),
            webhook_delivery=HttpWebhookDelivery(settings.public_url, webhook_secret_of(settings)),
        )

    @property
    def sandbox(self) -> SandboxGateway | None:
        """The sandbox gateway when it is the configured one (its checkout routes exist only
        then)."""
        return self.gateway if isinstance(self.gateway, SandboxGateway) else None

    @property
    def refresh_ttl(self) -> timedelta:
        """How long a refresh token lives (the identity rules take a duration)."""
        return timedelta(seconds=self.settings.refresh_token_ttl)

    @property
    def wish_cap(self) -> int:
        """How many products one customer's wish list may hold."""
        return self.settings.max_wishes_per_user

    @cached_property
    def order_cases(self) -> OrderCases:
        return OrderCases(
            orders=self.orders,
            stock=self.stock,
            clock=self.clock,
            rules=self.order_rules,
            observer=self.observer,
            sales=self.drop_sales,
        )

    @cached_property
    def payment_cases(self) -> PaymentCases:
        return PaymentCases(
            payments=self.payments,
            gateway=self.gateway,
            orders=self.orders,
            stock=self.stock,
            clock=self.clock,
            rules=self.order_rules,
            currency=self.settings.currency,
        )

    @cached_property
    def stock_cases(self) -> StockCases:
        return StockCases(
            stock=self.stock,
            operations=self.stock_operations,
            orders=self.order_states,
            clock=self.clock,
            pending_timeout=self.settings.reservation_timeout,
        )

    @cached_property
    def catalog(self) -> CatalogPorts:
        sessionmaker = self.sessionmaker

        def unit_of_work() -> CatalogUnitOfWork:
            return SqlCatalogUnitOfWork(sessionmaker)

        return CatalogPorts(
            unit_of_work=unit_of_work,
            reads=SqlCatalogReads(self.engine),
            scores=SqlPopularityScores(self.engine),
            ranking=RedisPopularRanking(self.redis),
            stock=self.stock,
            bulk=PostgresCatalogBulkLoad(self.engine),
        )

    async def refresh_popularity(self) -> int | None:
        """The popularity job's use case, with its weights and list size from settings."""
        return await catalog_services.refresh_popularity(
            self.catalog.scores,
            self.catalog.reads,
            self.catalog.ranking,
            weights=popularity_weights(self.settings),
            list_size=self.settings.popular_list_size,
        )

    @cached_property
    def observer(self) -> SaleObserver:
        stock = self.stock
        default = self.settings.stock_strategy

        def strategy() -> str:
            name = getattr(stock, "name", default)
            return name if isinstance(name, str) else default

        return PrometheusObserver(strategy)

    @cached_property
    def observation(self) -> ObservationPorts:
        return ObservationPorts(
            observer=self.observer,
            snapshots=RedisSaleSnapshots(self.redis),
            options=RecentlySoldOptions(self.engine, limit=self.settings.observed_options),
            drops=RoomDropsOnSale(self.drops, self.room, self.stock, self.clock),
            tally=OrderLineTally(self.engine),
            exposition=PrometheusExposition(),
        )

    @cached_property
    def wishes(self) -> Wishes:
        return SqlWishes(self.engine, self.sessionmaker)

    async def close(self) -> None:
        for closeable in (self.stock, self.batched_request_counter):
            closer = getattr(closeable, "close", None)
            if closer is not None:
                await closer()  # the batched counter sends its last hits
        await self.redis.aclose()  # the job queue's connections too
        await self.engine.dispose()

"""OpenTelemetry tracing: off by default, switched on by the standard ``OTEL_*`` variables.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``) is set, or
``OTEL_TRACES_EXPORTER=otlp``, and ``OTEL_SDK_DISABLED`` is not ``true``. Then each process
exports its spans over OTLP/HTTP in batches (the exporter reads the endpoint, headers,
timeout and ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` itself), and:
- every request gets a server span (Litestar's OpenTelemetry plugin, in ``http/app.py``);
- every PostgreSQL statement a span (asyncpg instrumentation: it sits below SQLAlchemy and
  also sees the purchase path's direct asyncpg statements);
- every Redis command a span (redis instrumentation);
- every stock operation a span with its strategy and outcome (``TracedStock``);
- every SAQ job a span (``traced_job`` in ``workers.py``).
Off, none of this is installed: the hot path pays nothing for it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from shop.domain.errors import PurchaseLimitExceeded, SoldOut, Unavailable
from shop.domain.stock.model import Line, PerBuyerLimit, Reservation
from shop.domain.stock.ports import StockReservation

TRACER_NAME = "shop"
P = ParamSpec("P")
T = TypeVar("T")

_instrumented = False


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return True
    return env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "otlp"


def start_tracing(service: str = "shop") -> None:
    """Install the OTLP exporter as this process's tracer provider (once), then the
    asyncpg and Redis instrumentation. Tests install their own provider and call
    ``instrument_drivers`` alone."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service)})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    instrument_drivers()


def instrument_drivers() -> None:
    """Spans for every asyncpg statement and Redis command of this process (idempotent)."""
    global _instrumented
    if _instrumented:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument()
    _instrumented = True


def uninstrument_drivers() -> None:
    """Undo ``instrument_drivers`` (for a test that traced inside a longer-lived process)."""
    global _instrumented
    if not _instrumented:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    RedisInstrumentor().uninstrument()
    _instrumented = False


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, PurchaseLimitExceeded):
        return "limit"
    if isinstance(exc, SoldOut):
        return "sold_out"
    if isinstance(exc, Unavailable):
        return "unavailable"
    return "error"


class TracedStock:
    """``StockReservation`` (and whatever else the wrapped port offers, e.g. the operations
    side) with a span per reserve/confirm/release/put_on_sale: ``shop.stock.strategy``
    is the strategy that was active, ``shop.stock.outcome`` ok, sold_out, limit,
    unavailable or error. A decorator, so no strategy needs to know about tracing."""

    def __init__(self, inner: StockReservation, strategy: Callable[[], str]) -> None:
        self._inner = inner
        self._strategy = strategy
        self._tracer = trace.get_tracer(TRACER_NAME)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def _traced(self, operation: str, call: Awaitable[T], attributes: Mapping[str, Any]) -> T:
        with self._tracer.start_as_current_span(
            f"stock.{operation}", record_exception=False, set_status_on_exception=False
        ) as span:
            span.set_attributes(dict(attributes))
            try:
                result = await call
            except BaseException as exc:
                self._finish(span, exc)
                raise
            self._finish(span, None)
            return result

    def _finish(self, span: Span, exc: BaseException | None) -> None:
        outcome = _outcome(exc)
        span.set_attribute("shop.stock.strategy", self._strategy())
        span.set_attribute("shop.stock.outcome", outcome)
        if outcome == "error" and exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))

    async def reserve(
        self,
        lines: Sequence[Line],
        *,
        key: str,
        buyer: str | None = None,
        per_buyer_limit: PerBuyerLimit = None,
    ) -> Reservation:
        return await self._traced(
            "reserve",
            self._inner.reserve(lines, key=key, buyer=buyer, per_buyer_limit=per_buyer_limit),
            {
                "shop.stock.lines": len(lines),
                "shop.stock.units": sum(line.quantity for line in lines),
                "shop.stock.option_ids": [line.option_id for line in lines],
            },
        )

    async def confirm(self, key: str) -> None:
        await self._traced("confirm", self._inner.confirm(key), {})

    async def release(self, key: str) -> None:
        await self._traced("release", self._inner.release(key), {})

    async def put_on_sale(self, option_id: int, units: int, *, key: str | None = None) -> None:
        await self._traced(
            "put_on_sale",
            self._inner.put_on_sale(option_id, units, key=key),
            {"shop.stock.option_ids": [option_id], "shop.stock.units": units},
        )

    async def available(self, option_ids: Sequence[int]) -> Mapping[int, int]:
        return await self._inner.available(option_ids)


def untraced_job(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A job that must not trace at all: the once-a-second ledger reading would otherwise be
    the bulk of every trace backend's traffic (a trace a second, a span per statement)."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    @functools.wraps(function)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with suppress_instrumentation():
            return await function(*args, **kwargs)

    return run


# Probes and scrapes: a span per Prometheus scrape or health probe says nothing.
UNTRACED_PATHS = ["^/metrics$", "^/health$"]


def traced_job(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A SAQ job function with a span around each run (name kept: SAQ enqueues by name)."""
    tracer = trace.get_tracer(TRACER_NAME)

    @functools.wraps(function)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with tracer.start_as_current_span(f"saq.job {function.__name__}") as span:
            span.set_attribute("saq.job", function.__name__)
            return await function(*args, **kwargs)

    return run

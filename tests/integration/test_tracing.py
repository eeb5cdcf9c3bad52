"""One purchase, traced: the request span holds the stock operations, the PostgreSQL
statements and the Redis commands it caused (in-memory exporter, real servers)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shop.adapters.tracing import (
    instrument_drivers,
    traced_job,
    tracing_requested,
    uninstrument_drivers,
    untraced_job,
)
from shop.bootstrap import Container
from shop.config import Settings
from shop.entrypoints.http.app import create_app
from shop.entrypoints.workers import observe_sale, sweep_reservations
from tests.conftest import http_client, reset_state
from tests.factories import make_option, make_user
from tests.jobs import job_context
from tests.orders_client import order_body

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    instrument_drivers()
    try:
        yield _EXPORTER
    finally:
        uninstrument_drivers()
        _EXPORTER.clear()


@pytest.fixture
async def traced(settings: Settings, exporter: InMemorySpanExporter) -> AsyncIterator[Container]:
    container = Container.build(settings, tracing=True)
    await reset_state(container)
    try:
        yield container
    finally:
        await container.close()


def _descends(span: ReadableSpan, root: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    parent = span.parent
    while parent is not None:
        if parent.span_id == root.context.span_id:
            return True
        above = by_id.get(parent.span_id)
        parent = above.parent if above is not None else None
    return False


@pytest.mark.parametrize(("strategy", "store"), [("db", "postgresql"), ("counter", "redis")])
async def test_a_purchase_is_one_trace_of_request_stock_postgres_and_redis(
    traced: Container, exporter: InMemorySpanExporter, strategy: str, store: str
) -> None:
    """The order is written to PostgreSQL under the request's span; the stock decision's own
    commands (statements for ``db``, Redis scripts for ``counter``) under its own span."""
    await traced.stock_operations.use(strategy)
    option_id = await make_option(traced, stock=3)
    _, buyer = await make_user(traced)
    exporter.clear()
    async with http_client(create_app(traced, tracing=True)) as client:
        response = await client.post(
            "/api/orders",
            json=order_body((option_id, 1)),
            headers={**buyer, "Idempotency-Key": uuid.uuid4().hex},
        )
    assert response.status_code == 201, response.text
    spans = list(exporter.get_finished_spans())
    root = next(
        s for s in spans if s.kind is SpanKind.SERVER and "POST" in s.name and s.parent is None
    )
    trace_spans = [s for s in spans if s.context.trace_id == root.context.trace_id]
    by_id = {s.context.span_id: s for s in trace_spans}
    inside = [s for s in trace_spans if _descends(s, root, by_id)]
    names = [s.name for s in inside]

    reserve = next(s for s in inside if s.name == "stock.reserve")
    assert reserve.attributes is not None
    assert reserve.attributes["shop.stock.strategy"] == strategy
    assert reserve.attributes["shop.stock.outcome"] == "ok"
    assert reserve.attributes["shop.stock.units"] == 1
    assert "stock.confirm" in names
    postgres = [s for s in inside if (s.attributes or {}).get("db.system") == "postgresql"]
    stock_store = [s for s in inside if (s.attributes or {}).get("db.system") == store]
    assert postgres, names
    assert any(_descends(s, reserve, by_id) for s in stock_store), names


async def test_a_sold_out_reservation_says_so_on_its_span(
    traced: Container, exporter: InMemorySpanExporter
) -> None:
    option_id = await make_option(traced, stock=0)
    _, buyer = await make_user(traced)
    exporter.clear()
    async with http_client(create_app(traced, tracing=True)) as client:
        response = await client.post(
            "/api/orders",
            json=order_body((option_id, 1)),
            headers={**buyer, "Idempotency-Key": uuid.uuid4().hex},
        )
    assert response.status_code == 409
    reserve = next(s for s in exporter.get_finished_spans() if s.name == "stock.reserve")
    assert (reserve.attributes or {})["shop.stock.outcome"] == "sold_out"


async def test_a_job_run_is_a_span_over_its_statements(
    traced: Container, exporter: InMemorySpanExporter
) -> None:
    await make_option(traced, stock=2)
    exporter.clear()
    async with job_context(traced) as ctx:
        await traced_job(sweep_reservations)(ctx)
    spans = list(exporter.get_finished_spans())
    job = next(s for s in spans if s.name == "saq.job sweep_reservations")
    by_id = {s.context.span_id: s for s in spans}
    assert any(
        (s.attributes or {}).get("db.system") == "postgresql" and _descends(s, job, by_id)
        for s in spans
    )


async def test_the_once_a_second_ledger_reading_is_not_traced(
    traced: Container, exporter: InMemorySpanExporter
) -> None:
    await make_option(traced, stock=2)
    exporter.clear()
    async with job_context(traced) as ctx:
        assert await untraced_job(observe_sale)(ctx) >= 1
    assert list(exporter.get_finished_spans()) == []


def test_tracing_is_off_unless_the_standard_variables_ask_for_it() -> None:
    assert not tracing_requested({})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing_requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )

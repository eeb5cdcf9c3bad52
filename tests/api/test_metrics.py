"""GET /metrics: the families an operator alerts on, counted across processes."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import textwrap
from pathlib import Path

import httpx

from shop.bootstrap import Container
from shop.entrypoints.http.app import create_app
from shop.entrypoints.workers import observe_sale
from tests.conftest import http_client
from tests.factories import make_option, make_user
from tests.jobs import job_context
from tests.metrics_text import FAMILIES, families, samples, value
from tests.orders_client import order_body, place, with_settings


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_purchases_are_counted_by_outcome_and_strategy(
    clean: Container, client: httpx.AsyncClient
) -> None:
    strategy = clean.settings.stock_strategy
    before = await scrape(client)
    option_id = await make_option(clean, stock=1)
    _, buyer = await make_user(clean)
    _, late = await make_user(clean)
    assert (await place(client, buyer, order_body((option_id, 1)), key="k1")).status_code == 201
    assert (await place(client, buyer, order_body((option_id, 1)), key="k1")).status_code == 200
    assert (await place(client, late, order_body((option_id, 1)))).status_code == 409
    after = await scrape(client)
    for outcome in ("created", "replayed", "sold_out"):
        counted = value(after, "shop_purchases_total", outcome=outcome, strategy=strategy)
        was = value(before, "shop_purchases_total", outcome=outcome, strategy=strategy)
        assert counted - was == 1, outcome


async def test_request_durations_are_labelled_by_route_template(
    clean: Container, client: httpx.AsyncClient
) -> None:
    await client.get("/api/products/999999999")
    await client.get("/no/such/path")
    text = await scrape(client)
    routes = {
        labels
        for name, labels in samples(text)
        if name == "shop_http_request_duration_seconds_count"
    }
    by_route = {dict(labels)["route"] for labels in routes}
    assert "/api/products/{product_id}" in by_route, by_route
    assert "unmatched" in by_route
    assert not any("999999999" in route for route in by_route)


async def test_the_worker_snapshot_feeds_the_invariant_gauges(
    clean: Container, client: httpx.AsyncClient
) -> None:
    option_id = await make_option(clean, stock=5)
    _, buyer = await make_user(clean)
    assert (await place(client, buyer, order_body((option_id, 2)))).status_code == 201
    async with job_context(clean) as ctx:
        assert await observe_sale(ctx) >= 1
    text = await scrape(client)
    label = str(option_id)
    assert value(text, "shop_stock_on_sale_units", option_id=label) == 5
    assert value(text, "shop_stock_sold_units", option_id=label) == 2
    assert value(text, "shop_stock_left_units", option_id=label) == 3
    assert value(text, "shop_stock_drift_units", option_id=label) == 0
    assert value(text, "shop_stock_oversold_units", option_id=label) == 0
    assert value(text, "shop_sale_snapshot_age_seconds") >= 0


async def test_metrics_are_never_throttled(clean: Container) -> None:
    strict = with_settings(clean, rate_limit_enabled=True, rate_limit_anonymous="2/minute")
    async with http_client(create_app(strict)) as client:
        codes = [(await client.get("/metrics")).status_code for _ in range(6)]
    assert codes == [200] * 6


async def test_a_metrics_token_is_required_when_configured(clean: Container) -> None:
    guarded = with_settings(clean, metrics_token="scrape-me-0123456789")
    async with http_client(create_app(guarded)) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer scrape-me-0123456789"}
        assert (await client.get("/metrics", headers=right)).status_code == 200


async def test_counts_of_other_processes_are_added_up(
    clean: Container, client: httpx.AsyncClient
) -> None:
    """What a second granian worker (or the SAQ worker) counted shows in this one's scrape."""
    before = value(await scrape(client), "shop_orders_expired_total")
    other = textwrap.dedent(
        """
        from shop.adapters.metrics.prometheus import PrometheusObserver
        PrometheusObserver(lambda: "db").orders_expired(3)
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", other, env=dict(os.environ)
    )
    assert await asyncio.wait_for(process.wait(), timeout=60) == 0
    after = value(await scrape(client), "shop_orders_expired_total")
    assert after - before == 3


async def test_every_family_is_exposed_with_its_help(client: httpx.AsyncClient) -> None:
    text = await scrape(client)
    exposed = families(text)
    assert exposed >= FAMILIES, FAMILIES - exposed
    for outcome in ("created", "replayed", "sold_out", "limit", "unavailable", "invalid", "error"):
        assert f'outcome="{outcome}"' in text


async def test_a_worker_in_its_own_container_serves_its_counts_itself(tmp_path: Path) -> None:
    """SHOP_WORKER_METRICS_PORT: no web process shares the worker's directory there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = textwrap.dedent(
        f"""
        import time
        from shop.adapters.metrics.prometheus import PrometheusObserver, serve_worker_metrics
        serve_worker_metrics({port})
        PrometheusObserver(lambda: "db").orders_expired(2)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing" / "dir")}
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", worker, env=env)
    try:
        async with httpx.AsyncClient() as client:
            text = ""
            for _ in range(100):
                try:
                    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
                    continue
                if "shop_orders_expired_total 2.0" in text:
                    break
                await asyncio.sleep(0.1)
        assert "shop_orders_expired_total 2.0" in text, text[:2000]
    finally:
        process.kill()
        await process.wait()

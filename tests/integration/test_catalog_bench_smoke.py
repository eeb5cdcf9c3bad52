"""A small run of the listing benchmark (``python -m benchmarks.catalog``), as documented.

Correctness only, no timing assertions: the walk to the deep page goes further than the
anonymous quota allows (120 requests a minute) in every listing, so a benchmark that let the
throttle refuse it would stop here, as it once did after ~120 pages (429, then a KeyError on
the refusal's body).
"""

from __future__ import annotations

import pytest
from benchmarks.catalog import main_async, parse_args


@pytest.mark.slow
async def test_the_listing_benchmark_walks_past_the_anonymous_quota(
    postgres_server_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The benchmark creates (and drops) its own database on this server.
    monkeypatch.setenv("SHOP_BENCH_DATABASE_URL", postgres_server_url)
    monkeypatch.setenv("SHOP_BENCH_REDIS_URL", redis_url)
    args = parse_args(["--products", "3000", "--categories", "12", "--deep-page", "130",
                       "--repeat", "2"])  # fmt: skip

    rows = await main_async(args)

    assert len(rows) == 5
    assert rows[0].deep_page == rows[1].deep_page == 130
    for row in rows:
        assert row.deep_page > 1, row
        assert min(row.http_first, row.http_deep, row.adapter_first, row.adapter_deep) > 0, row

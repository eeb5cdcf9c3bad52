"""``shop bench``: the stock-strategy benchmark (see benchmarks/stock.py)."""

from __future__ import annotations

from pathlib import Path

import click


def _ints(value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not numbers or min(numbers) < 1:
        raise click.BadParameter("give at least one positive integer")
    return numbers


def _names(value: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise click.BadParameter(f"choose from {', '.join(allowed)}")
    return names


@click.command()
@click.option("--quick", is_flag=True, help="Every strategy and scenario in about two minutes.")
@click.option("--strategies", default="counter,redlock,db", show_default=True)
@click.option(
    "--scenarios",
    default="hot,spread,sellout",
    show_default=True,
    help="hot, spread, sellout and/or drop (a queued drop, benchmarks/drop.py).",
)
@click.option("--workers", default="2", show_default=True, help="App worker counts, e.g. 1,2.")
@click.option("--concurrency", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--duration", default=10.0, show_default=True, type=click.FloatRange(1, 600))
@click.option("--stock", "sellout_stock", default=200, show_default=True, type=click.IntRange(1))
@click.option("--buyers", "sellout_buyers", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--spread-options", default=500, show_default=True, type=click.IntRange(2))
@click.option("--port", default=8799, show_default=True, type=click.IntRange(1, 65535))
@click.option("--data-dir", default=".shop-bench", show_default=True)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("benchmarks/results/latest.json"),
    show_default=True,
)
@click.option("--no-chart", is_flag=True, help="Skip the PNG chart.")
@click.option(
    "--generator",
    type=click.Choice(["auto", "aiohttp"]),
    default="auto",
    show_default=True,
    help="auto: wrk when installed, else the built-in aiohttp generator.",
)
def bench(
    quick: bool,
    strategies: str,
    scenarios: str,
    workers: str,
    concurrency: int,
    duration: float,
    sellout_stock: int,
    sellout_buyers: int,
    spread_options: int,
    port: int,
    data_dir: str,
    out: Path,
    no_chart: bool,
    generator: str,
) -> None:
    """Benchmark the stock strategies with real concurrent HTTP purchases."""
    try:
        from benchmarks.stock import (
            SCENARIOS,
            STRATEGIES,
            BenchConfig,
            failed_runs,
            quick_config,
            run,
        )
    except ImportError as exc:  # the benchmark ships with the source tree, not the wheel
        raise click.ClickException(f"run from a source checkout: {exc}") from None
    config = (
        quick_config(out)
        if quick
        else BenchConfig(
            duration=duration,
            sellout_stock=sellout_stock,
            sellout_buyers=sellout_buyers,
            spread_options=spread_options,
            out=out,
        )
    )
    config.strategies = _names(strategies, STRATEGIES)
    chosen = _names(scenarios, (*SCENARIOS, "drop"))
    if "drop" in chosen:
        _run_drop(
            workers=_ints(workers),
            concurrency=concurrency,
            duration=duration,
            port=port,
            data_dir=data_dir,
            stock=sellout_stock,
            quick=quick,
        )
        chosen = tuple(name for name in chosen if name != "drop")
        if not chosen:
            return
    config.scenarios = chosen
    config.workers = _ints(workers)
    config.concurrency = concurrency
    config.port = port
    config.data_dir = data_dir
    config.chart = not no_chart
    config.generator = generator
    report = run(config)
    failed = failed_runs(report)
    if failed:
        # Drift and "never settled" fail the run too: the bench is also the shop's end-to-end
        # check that the stores agree, and a run it cannot vouch for is not a clean figure.
        names = ", ".join(
            f"{r['strategy']}/{r['scenario']}×{r['workers']}: "
            + ("oversold" if r["oversold"] else r["audit"]["verdict"])
            for r in failed
        )
        kind = "OVERSOLD" if any(r["oversold"] for r in failed) else "AUDIT FAILED"
        raise click.ClickException(f"{kind} ({names}); details above and in {config.out}")


def _run_drop(
    *,
    workers: tuple[int, ...],
    concurrency: int,
    duration: float,
    port: int,
    data_dir: str,
    stock: int,
    quick: bool,
) -> None:
    """The ``drop`` scenario (benchmarks/drop.py): thousands of clients polling a queued drop."""
    from benchmarks.drop import DropBenchConfig, failed, run_drop

    bad = []
    for count in workers:
        result = run_drop(
            DropBenchConfig(
                clients=500 if quick else 2000,
                stock=min(stock, 100) if quick else stock,
                concurrency=concurrency,
                duration=5.0 if quick else duration,
                workers=count,
                port=port,
                data_dir=data_dir,
                out=Path(f"benchmarks/results/drop-{count}.json"),
            )
        )
        if failed(result):
            bad.append(count)
    if bad:
        raise click.ClickException(f"drop scenario failed (workers {bad}): sold != stock or audit")

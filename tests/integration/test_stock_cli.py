"""``shop stock …`` run as an operator runs it: a separate process against the same servers."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from shop.bootstrap import Container
from shop.domain.stock.model import Line
from tests.factories import make_option


async def _shop(container: Container, *args: str) -> tuple[int, str]:
    settings = container.settings
    env = {
        **os.environ,
        "SHOP_ENVIRONMENT": "test",
        "SHOP_DATABASE_URL": str(settings.database_url),
        "SHOP_REDIS_URL": str(settings.redis_url),
        "SHOP_JWT_SECRET": str(settings.jwt_secret),
        "SHOP_DATA_DIR": settings.data_dir,
        "SHOP_LOG_LEVEL": "ERROR",
        "COLUMNS": "160",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "shop"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return int(process.returncode or 0), out.decode()


async def test_use_switches_the_running_deployment_and_status_shows_it(clean: Container) -> None:
    option_id = await make_option(clean, stock=7)
    await clean.stock.reserve([Line(option_id, 2)], key="k")

    code, out = await _shop(clean, "stock", "use", "counter")
    assert code == 0, out
    assert "switched from db to counter" in out
    assert await clean.stock_operations.active_strategy() == "counter"
    assert (await clean.stock.available([option_id]))[option_id] == 5

    code, out = await _shop(clean, "stock", "status")
    assert code == 0, out
    assert "active stock strategy: counter" in out
    rows = [line.replace("│", " ").split() for line in out.splitlines() if "│" in line]
    # option, total, sold, held, db stock, redis counter, ledger, drift
    assert [str(option_id), "7", "0", "2", "5", "5", "5", "0"] in rows

    code, out = await _shop(clean, "stock", "use", "counter")
    assert (code, "already counter" in out) == (0, True)


async def test_reconcile_reports_drift_then_fixes_it(clean: Container) -> None:
    await clean.stock_operations.use("counter")
    option_id = await make_option(clean, stock=7)
    await clean.redis.set(f"shop:stock:{{o{option_id}}}:left", 3)

    code, out = await _shop(clean, "stock", "reconcile")
    assert code == 1, out
    assert "drifting options" in out and "-4" in out

    code, out = await _shop(clean, "stock", "reconcile", "--fix")
    assert code == 0, out
    assert "repaired 1 option(s)" in out
    assert (await clean.stock.available([option_id]))[option_id] == 7

    code, out = await _shop(clean, "stock", "reconcile")
    assert (code, "no drift" in out) == (0, True)

    # The repair hid nothing: status shows what it found and changed.
    code, out = await _shop(clean, "stock", "status")
    assert code == 0, out
    assert (
        "last rebuild from the ledger:" in out
        and "(counter, repair): 1 option(s), 1 changed" in out
    )
    rows = [line.replace("│", " ").split() for line in out.splitlines() if "│" in line]
    # option, before, after, drift
    assert [str(option_id), "3", "7", "-4"] in rows


async def test_an_unknown_strategy_is_refused_by_name(clean: Container) -> None:
    code, out = await _shop(clean, "stock", "use", "optimistic")
    assert code == 2
    assert "optimistic" in out and "counter" in out

"""What the last rebuild of a store from the ledger found: kept in PostgreSQL, logged too.

A counter recovery after a loss and ``shop stock reconcile --fix`` both reset what is left to
the ledger's figure. That is correct by construction and would erase the evidence of what was
wrong, so each writes its findings (``StockRebuild``) in the transaction that commits the
reset: ``app_setting['stock_last_rebuild']`` as JSON, read back by ``shop stock status``, and
one warning per changed option in the log.
"""

from __future__ import annotations

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from shop.adapters.db.stock_fence import read_setting, write_setting
from shop.domain.stock.model import StockRebuild
from shop.logs import get_logger

REBUILD_SETTING = "stock_last_rebuild"
_log = get_logger("shop.stock.rebuild")


async def record_rebuild(conn: AsyncConnection, rebuild: StockRebuild) -> None:
    """Store ``rebuild`` in the caller's transaction and log what it changed."""
    await write_setting(conn, REBUILD_SETTING, msgspec.json.encode(rebuild).decode())
    for option in rebuild.changed:
        _log.warning(
            "stock rebuilt from the ledger differs from what the store said",
            option_id=option.option_id,
            before=option.before,
            after=option.after,
            drift=option.drift,
            source=rebuild.source,
            cause=rebuild.cause,
        )


async def last_rebuild(conn: AsyncConnection) -> StockRebuild | None:
    raw = await read_setting(conn, REBUILD_SETTING)
    return None if raw is None else msgspec.json.decode(raw, type=StockRebuild)

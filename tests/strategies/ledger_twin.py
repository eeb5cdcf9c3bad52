"""``ledger-twin``: a fourth stock strategy that exists to prove the registry is the only list.

It sells exactly like ``db`` (conditional UPDATEs under the PostgreSQL fence, with its own
name in the fence check) and shares ``db``'s home, so switching to or from it only changes the
active name. Registered by one line in ``tests/conftest.py``: with that line alone the stock
contract suite, the restock suite and the race suites parametrized over
``STOCK_STRATEGIES`` run against it, ``SHOP_STOCK_STRATEGY`` accepts it, ``shop stock use``
offers it and the benchmark runs it. It is not a strategy anyone would deploy: the point is
what adding one costs, not what it does.
"""

from __future__ import annotations

from shop.adapters.db.stock import PostgresStock
from shop.bootstrap import StockDeps

NAME = "ledger-twin"


class LedgerTwinStock(PostgresStock):
    """``db`` under another name: every write passes the fence as ``ledger-twin``."""

    name = NAME


def ledger_twin(deps: StockDeps) -> LedgerTwinStock:
    """The registry's factory: built from the same ``StockDeps`` as every strategy."""
    return LedgerTwinStock(deps.engine)

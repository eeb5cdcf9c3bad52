"""The conservation arithmetic every store is checked against, written once.

For each option, once reservations settle, ``stock_total = left + sold + held``: ``sold``
counts the lines of live orders, ``held`` the units of reservations no live order accounts
for yet. Every strategy, the status report, a repair and a rebuild after a loss ask this
module what should be left; SQL that must compute it inside a statement points back here.
"""

from __future__ import annotations


def expected_left(stock_total: int, *, sold: int, held: int = 0) -> int:
    """What should be left on sale: ``stock_total - sold - held``.

    Negative only when the ledger shows more sold than was ever put on sale (an oversell
    found after the fact); callers that store the figure clamp it at zero and report it.
    """
    return stock_total - sold - held


def balances(stock_total: int, *, sold: int, left: int, held: int = 0) -> bool:
    """Conservation holds with ``left`` units still on sale."""
    return expected_left(stock_total, sold=sold, held=held) == left

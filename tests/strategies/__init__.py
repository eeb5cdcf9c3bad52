"""Stock strategies that exist only for the tests (registered in ``tests/conftest.py``).

They are registered in the pytest process only: a ``shop`` subprocess (``shop up``, a
script under ``python -c``) builds its registry from ``bootstrap`` alone and cannot serve
them. The few tests that sell through such a subprocess leave ``TEST_ONLY`` out.
"""

from __future__ import annotations

from tests.strategies.ledger_twin import NAME as LEDGER_TWIN

TEST_ONLY = frozenset({LEDGER_TWIN})

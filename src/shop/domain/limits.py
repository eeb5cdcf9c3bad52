"""The bounds every number and string the shop stores must keep, decided once.

PostgreSQL refuses what its columns cannot hold (a ``bigint`` id of 2^63, a 32-bit position
of 2^31, a NUL inside ``text``) with a driver error that used to become a 500. Each bound
below is the column's range or a business cap well inside it; the HTTP schemas declare the
same numbers (so the OpenAPI document states them), and the domain rules re-check the ones
that can be reached by arithmetic (an order total, a cumulative restock).
"""

from __future__ import annotations

# Ids are ``bigint`` identities, accepted from 1 to 2^53 - 1: every integer up to there is
# exact as a double, so JSON tools that read numbers as floats (JavaScript, most fuzzers and
# validators) read the documented bound, and any id, as the server does. Sequences starting
# at 1 never get near it; beyond it nothing reaches PostgreSQL's 2^63 - 1.
MAX_ID = 2**53 - 1
# Positions and stock counts are 32-bit ``integer`` columns.
MAX_INT32 = 2**31 - 1
# Positions are stored in those 32-bit columns too; the cap leaves room for "append after
# the last" (max + 1) however positions were chosen.
MAX_POSITION = 10**9
# One price, in minor units: 10^12 cents is ten billion in the major unit, far above any
# product, and leaves the order total (below) room inside ``bigint``.
MAX_PRICE = 10**12
# One order's total, in minor units; with prices capped at MAX_PRICE and at most a few
# thousand units per order this is reachable only by design, never by overflow.
MAX_ORDER_TOTAL = 10**15
# A category chain deeper than this is refused on write: the tree is served as nested JSON,
# and a nesting this deep is already unusable as navigation.
MAX_CATEGORY_DEPTH = 32
# Category links of one product.
MAX_CATEGORIES_PER_PRODUCT = 100

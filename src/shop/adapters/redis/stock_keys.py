"""Redis key layout of the stock module, shared by the counter strategy and the live switch.

Per-option keys carry the hash tag ``{o<id>}``: an option's counter, the reservations holding
it and its buyers' tallies share one Redis Cluster slot. The reservation records, the pending
index and the control keys share the ``{stock}`` tag. See ``stock_counter`` for what that
means for multi-option reservations on a cluster.
"""

from __future__ import annotations

PREFIX = "shop:stock"

# Which strategy sells: "counter" | "db" | "redlock", or "switching" while a switch moves
# state. Counter scripts refuse to run unless it says "counter".
ACTIVE = f"{PREFIX}:{{stock}}:active"
# Held by the process running a switch (SET NX PX, extended while it works).
SWITCH_LOCK = f"{PREFIX}:{{stock}}:switching"
SWITCHING = "switching"
# What ``active`` says while the counter strategy sells (also the strategy's name).
COUNTER = "counter"

# Exists iff Redis holds the complete counter state; its value is the generation id also
# stored in PostgreSQL. A FLUSHDB or an empty restart removes it, which triggers recovery.
GENERATION = f"{PREFIX}:{{stock}}:generation"
# Set by an import before it writes anything; the import publishes GENERATION only if this
# marker is still there (a FLUSHDB or an empty restart in between removes it).
STAGING = f"{PREFIX}:{{stock}}:staging"
# Held by the process rebuilding the counter state after a loss (SET NX PX).
REBUILD_LOCK = f"{PREFIX}:{{stock}}:rebuilding"
# HASH reservation key -> "status|created_ms|lines|buyer" (status p = pending, c = confirmed).
RECORDS = f"{PREFIX}:{{stock}}:reservations"
# ZSET reservation key -> created_ms, pending ones only (what the sweep looks at first).
PENDING = f"{PREFIX}:{{stock}}:pending"
# SET of option ids that have a counter (what the sync and the switch read).
OPTIONS = f"{PREFIX}:{{stock}}:options"


def left_key(option_id: int) -> str:
    """STRING: units of the option that can still be reserved."""
    return f"{PREFIX}:{{o{option_id}}}:left"


def held_key(option_id: int) -> str:
    """HASH reservation key -> units of the option it holds (pending or confirmed)."""
    return f"{PREFIX}:{{o{option_id}}}:held"


def buyers_key(option_id: int) -> str:
    """HASH buyer -> units of the option held by that buyer's unreleased reservations."""
    return f"{PREFIX}:{{o{option_id}}}:buyers"


def restocks_key(option_id: int) -> str:
    """HASH restock Idempotency-Key -> units, for restocks whose units reached this counter
    (checked against the generation they were committed under, see the RESTOCK script)."""
    return f"{PREFIX}:{{o{option_id}}}:restocks"


def lock_name(option_id: int) -> str:
    """Redlock resource of the option (pottery prefixes it with ``redlock:``)."""
    return f"{PREFIX}:{{o{option_id}}}:lock"


def option_keys(option_id: int) -> tuple[str, str, str]:
    return left_key(option_id), held_key(option_id), buyers_key(option_id)

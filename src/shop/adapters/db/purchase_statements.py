"""The purchase path's two statements, each written for N purchases at once (group commit).

At saturation each purchase used to send its own quote and its own insert: a pool checkout,
an asyncpg round trip and a statement for PostgreSQL to run and (for the insert) commit, per
order. ``SqlOrders`` now hands the concurrent purchases of one process to a ``Coalescer``,
and these statements serve a whole batch in one round trip: the quote reads every caller's
prices and earlier order, the insert claims, writes and commits every caller's order with
one durable commit. A lone purchase keeps its single-row statement (``QUOTE``, ``ADD``): the
multi-row ones cost a lone call more to plan and run (a sequential purchase measured slower
with them), and the capped drop insert and the one-by-one retry of a failed batch use them too.

The batch travels as parallel arrays (``unnest``); rows carry the caller's index (quote) or
order id (insert) so each caller gets exactly the answer its own statement used to give.
Written once as SQL and run on the asyncpg driver directly: building them per request with
the expression language, and SQLAlchemy's cursor layer around asyncpg, cost more CPU than the
round trips themselves (profiled with py-spy under ``shop bench``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from shop.adapters.db.reservation_claims import GENERATION_ALIVE_SQL, ORDER, VOID
from shop.domain.orders.model import OptionPrice, Order, Quote, reservation_key

# One row per known option, or a single all-NULL row when none is known, always carrying the
# earlier order's id (if any) and the claim on the reservation key: one round trip either way.
QUOTE = """
    SELECT (SELECT id FROM purchase_order
             WHERE user_id = $1 AND idempotency_key = $2) AS existing,
           (SELECT outcome FROM reservation_claim WHERE key = $4) AS claim,
           option.id, option.product_id, option.price, option.drop_id
      FROM (SELECT 1) AS anchor
      LEFT JOIN option ON option.id = ANY($3::bigint[])
"""


def one_quote_args(
    user_id: uuid.UUID, idempotency_key: str, option_ids: Sequence[int]
) -> tuple[Any, ...]:
    """``QUOTE``'s arguments."""
    return (user_id, idempotency_key, list(option_ids), reservation_key(user_id, idempotency_key))


def quote_of(rows: Sequence[Any]) -> Quote:
    """The ``Quote`` in ``QUOTE``'s rows (or in one ask's rows of ``QUOTES``)."""
    known = [row for row in rows if row["id"] is not None]
    return Quote(
        prices={
            int(row["id"]): OptionPrice(int(row["id"]), int(row["product_id"]), int(row["price"]))
            for row in known
        },
        existing_order_id=rows[0]["existing"] if rows else None,
        abandoned=bool(rows) and rows[0]["claim"] == VOID,
        drop_of_option={
            int(row["id"]): int(row["drop_id"]) for row in known if row["drop_id"] is not None
        },
    )


# One row per (ask, known option), or a single row with NULL option columns for an ask none
# of whose options is known; each carries the ask's earlier order (if any) and the claim on
# its reservation key.
QUOTES = """
    SELECT ask.idx,
           (SELECT id FROM purchase_order
             WHERE user_id = ask.user_id AND idempotency_key = ask.idempotency_key) AS existing,
           (SELECT outcome FROM reservation_claim WHERE key = ask.reservation_key) AS claim,
           option.id, option.product_id, option.price, option.drop_id
      FROM unnest($1::integer[], $2::uuid[], $3::varchar[], $4::text[])
               AS ask(idx, user_id, idempotency_key, reservation_key)
      LEFT JOIN (unnest($5::integer[], $6::bigint[]) AS wanted(idx, option_id)
                 JOIN option ON option.id = wanted.option_id)
        ON wanted.idx = ask.idx
"""


def quote_args(asks: Sequence[tuple[uuid.UUID, str, Sequence[int]]]) -> tuple[Any, ...]:
    """``QUOTES``'s arguments for (customer, idempotency key, option ids) asks."""
    wanted = [(idx, option_id) for idx, (_, _, ids) in enumerate(asks) for option_id in ids]
    return (
        list(range(len(asks))),
        [user_id for user_id, _, _ in asks],
        [key for _, key, _ in asks],
        [reservation_key(user_id, key) for user_id, key, _ in asks],
        [idx for idx, _ in wanted],
        [option_id for _, option_id in wanted],
    )


def quotes_from(rows: Sequence[Any], count: int) -> list[Quote]:
    """One ``Quote`` per ask, in order, from ``QUOTES``'s rows."""
    by_ask: list[list[Any]] = [[] for _ in range(count)]
    for row in rows:
        by_ask[int(row["idx"])].append(row)
    return [quote_of(ask_rows) for ask_rows in by_ask]


# The claim on the reservation key ($9) decides whether the order and its lines are written:
# a racing twin of the same idempotency key, a sweep that claimed the key void, or a counter
# generation ($16, NULL for the PostgreSQL strategies) lost since the reservation makes this
# write nothing, which RETURNING reports (see reservation_claims).
ADD = f"""
    WITH claim AS (
        INSERT INTO reservation_claim (key, outcome)
        SELECT $9, '{ORDER}'
         WHERE $16::text IS NULL OR {GENERATION_ALIVE_SQL % "$16::text"}
        ON CONFLICT (key) DO NOTHING
        RETURNING key
    ),
    new_order AS (
        INSERT INTO purchase_order (id, user_id, status, payment_method, pay_by, total,
                                    shipping_address, idempotency_key, reservation_key,
                                    request_fingerprint, created_at, drop_id)
        SELECT $1::uuid, $2::uuid, $3::varchar, $4::varchar, $5::timestamptz, $6::bigint,
               $7::text, $8::varchar, claim.key, $10::varchar, $11::timestamptz, $17::bigint
          FROM claim
        ON CONFLICT DO NOTHING
        RETURNING id
    )
    INSERT INTO order_line (order_id, option_id, product_id, quantity, unit_price)
    SELECT new_order.id, item.option_id, item.product_id, item.quantity, item.unit_price
      FROM new_order,
           unnest($12::bigint[], $13::bigint[], $14::integer[], $15::bigint[])
               AS item(option_id, product_id, quantity, unit_price)
    RETURNING order_id
"""


def one_add_args(order: Order, stock_generation: str | None) -> tuple[Any, ...]:
    """``ADD``'s arguments."""
    return (
        order.id,
        order.user_id,
        order.status.value,
        order.payment_method.value,
        order.pay_by,
        order.total,
        order.shipping_address,
        order.idempotency_key,
        order.reservation_key,
        order.request_fingerprint,
        order.created_at,
        [line.option_id for line in order.lines],
        [line.product_id for line in order.lines],
        [line.quantity for line in order.lines],
        [line.unit_price for line in order.lines],
        stock_generation,
        order.drop_id,
    )


# ``ADD`` for a batch. An order's claim on its reservation key decides whether the order and
# its lines are written: a racing twin of the same idempotency key (in another statement, or
# earlier in this batch: the first of a batch's twins is the one that may claim), a sweep that
# claimed the key void, or a counter generation (NULL for the PostgreSQL strategies) lost since
# the reservation makes this write nothing for that order, which the final SELECT reports by
# leaving its id out (see reservation_claims). The claims are taken in reservation-key order,
# so two batches holding the same two keys cannot wait on each other (no deadlock). One
# statement: it commits every order of the batch or, on an error, none.
ADD_ORDERS = f"""
    WITH first_of_key AS (
        SELECT DISTINCT ON (item.reservation_key) item.*
          FROM unnest($1::integer[], $2::uuid[], $3::uuid[], $4::varchar[], $5::varchar[],
                      $6::timestamptz[], $7::bigint[], $8::text[], $9::varchar[], $10::text[],
                      $11::varchar[], $12::timestamptz[], $13::text[], $14::bigint[])
               AS item(idx, id, user_id, status, payment_method, pay_by, total,
                       shipping_address, idempotency_key, reservation_key,
                       request_fingerprint, created_at, generation, drop_id)
         ORDER BY item.reservation_key, item.idx
    ),
    claim AS (
        INSERT INTO reservation_claim (key, outcome)
        SELECT reservation_key, '{ORDER}'
          FROM first_of_key
         WHERE generation IS NULL OR {GENERATION_ALIVE_SQL % "generation"}
         ORDER BY reservation_key
        ON CONFLICT (key) DO NOTHING
        RETURNING key
    ),
    new_order AS (
        INSERT INTO purchase_order (id, user_id, status, payment_method, pay_by, total,
                                    shipping_address, idempotency_key, reservation_key,
                                    request_fingerprint, created_at, drop_id)
        SELECT item.id, item.user_id, item.status, item.payment_method, item.pay_by,
               item.total, item.shipping_address, item.idempotency_key, claim.key,
               item.request_fingerprint, item.created_at, item.drop_id
          FROM first_of_key AS item
          JOIN claim ON claim.key = item.reservation_key
        ON CONFLICT DO NOTHING
        RETURNING id
    ),
    new_line AS (
        INSERT INTO order_line (order_id, option_id, product_id, quantity, unit_price)
        SELECT line.order_id, line.option_id, line.product_id, line.quantity, line.unit_price
          FROM unnest($15::uuid[], $16::bigint[], $17::bigint[], $18::integer[], $19::bigint[])
                   AS line(order_id, option_id, product_id, quantity, unit_price)
          JOIN new_order ON new_order.id = line.order_id
    )
    SELECT id FROM new_order
"""


def add_args(items: Sequence[tuple[Order, str | None]]) -> tuple[Any, ...]:
    """``ADD_ORDERS``'s arguments for (order, stock generation of its reservation) items."""
    orders = [order for order, _ in items]
    lines = [(order.id, line) for order in orders for line in order.lines]
    return (
        list(range(len(orders))),
        [order.id for order in orders],
        [order.user_id for order in orders],
        [order.status.value for order in orders],
        [order.payment_method.value for order in orders],
        [order.pay_by for order in orders],
        [order.total for order in orders],
        [order.shipping_address for order in orders],
        [order.idempotency_key for order in orders],
        [order.reservation_key for order in orders],
        [order.request_fingerprint for order in orders],
        [order.created_at for order in orders],
        [generation for _, generation in items],
        [order.drop_id for order in orders],
        [order_id for order_id, _ in lines],
        [line.option_id for _, line in lines],
        [line.product_id for _, line in lines],
        [line.quantity for _, line in lines],
        [line.unit_price for _, line in lines],
    )


def written_of(rows: Sequence[Any]) -> set[uuid.UUID]:
    """The ids of the orders ``ADD_ORDERS`` wrote."""
    return {row["id"] for row in rows}

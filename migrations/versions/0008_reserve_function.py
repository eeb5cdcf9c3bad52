"""stock: shop_reserve_stock(s), a db/redlock reservation (or a batch of them) in one statement

Revision ID: 0008_reserve_function
Revises: 0007_drops
Create Date: 2026-12-06 02:00:00.000000

The ``db`` and ``redlock`` strategies reserved with BEGIN, record, tally, decrement(s) and
COMMIT: five round trips, the last two (decrement, commit) while the option's row lock (and,
for redlock, its Redis lock) was held. This function runs the same statements, in the same
order, inside one statement: one round trip, and the row lock is held only for the server's
own time between the decrement and the statement's commit. A refusal raises, so the
statement's transaction rolls back whole, as the old transaction did:

- ``SHMOV``: the strategy moved (the fence said no, or the key's record is gone): nothing
  written; DETAIL is the active strategy;
- ``SHLIM``: the buyer's tally would go over its limit; DETAIL is the option id;
- ``SHSLD``: a line does not fit in what is left; DETAIL is the option id;
- a tally row of an option deleted meanwhile breaks its foreign key (23503), as before.

It returns NULL when this call recorded the reservation and took its units, or the lines of
the reservation the key already holds (a retry takes nothing more).

``shop_reserve_stocks(items, strategy)`` runs it for each item of a JSON array, in order, each
in a subtransaction of its own (a refused item rolls back alone), and answers a JSON array:
``{"lines": …}`` (null, or the key's earlier lines) or ``{"state": SQLSTATE, "detail": …}``
per item. The values (fence lock
key, statuses) are written out: a migration describes the schema as of its revision.
"""

from __future__ import annotations

from alembic import op

revision = "0008_reserve_function"
down_revision = "0007_drops"
branch_labels = None
depends_on = None

RESERVE_FUNCTION = """
CREATE FUNCTION shop_reserve_stock(
    p_key varchar, p_lines jsonb, p_buyer varchar, p_strategy text,
    p_option_ids bigint[], p_quantities integer[], p_limits integer[]
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    recorded varchar;
    existing jsonb;
    active text;
    counted integer;
    i integer;
BEGIN
    -- Neither the reservation nor its decrement needs its own disk flush (see stock_rows).
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO stock_reservation (key, lines, buyer)
    SELECT p_key, p_lines, p_buyer WHERE shop_stock_fence(32484450158998635, p_strategy)
    ON CONFLICT (key) DO UPDATE SET lines = EXCLUDED.lines, buyer = EXCLUDED.buyer,
        status = 'pending', created_at = now(), settled_at = NULL
        WHERE stock_reservation.status IN ('released', 'moved')
    RETURNING key INTO recorded;
    IF recorded IS NULL THEN
        SELECT value INTO active FROM app_setting WHERE name = 'stock_strategy';
        SELECT lines INTO existing FROM stock_reservation WHERE key = p_key;
        IF active IS DISTINCT FROM p_strategy OR existing IS NULL THEN
            RAISE EXCEPTION 'stock strategy is %, not %', active, p_strategy
                USING ERRCODE = 'SHMOV', DETAIL = coalesce(active, '');
        END IF;
        RETURN existing;
    END IF;
    -- The buyer's tallies first: a customer over the limit never queues on the hot row.
    IF p_buyer IS NOT NULL THEN
        FOR i IN 1 .. coalesce(array_length(p_option_ids, 1), 0) LOOP
            counted := NULL;
            INSERT INTO stock_buyer_tally (option_id, buyer, units)
            SELECT p_option_ids[i], p_buyer, p_quantities[i]
            WHERE p_limits[i] IS NULL OR p_quantities[i] <= p_limits[i]
            ON CONFLICT (option_id, buyer) DO UPDATE
                SET units = stock_buyer_tally.units + EXCLUDED.units
                WHERE p_limits[i] IS NULL
                    OR stock_buyer_tally.units + EXCLUDED.units <= p_limits[i]
            RETURNING units INTO counted;
            IF counted IS NULL THEN
                RAISE EXCEPTION 'over the per-buyer limit of option %', p_option_ids[i]
                    USING ERRCODE = 'SHLIM', DETAIL = p_option_ids[i]::text;
            END IF;
        END LOOP;
    END IF;
    -- Lines come in option-id order: two multi-line orders lock rows in the same order.
    FOR i IN 1 .. coalesce(array_length(p_option_ids, 1), 0) LOOP
        UPDATE option SET stock = stock - p_quantities[i]
        WHERE id = p_option_ids[i] AND stock >= p_quantities[i];
        IF NOT FOUND THEN
            RAISE EXCEPTION 'option % is sold out', p_option_ids[i]
                USING ERRCODE = 'SHSLD', DETAIL = p_option_ids[i]::text;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$
"""

RESERVE_MANY_FUNCTION = """
CREATE FUNCTION shop_reserve_stocks(p_items jsonb, p_strategy text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    item jsonb;
    outcomes jsonb := '[]'::jsonb;
    existing jsonb;
    refused_state text;
    refused_detail text;
BEGIN
    FOR item IN SELECT value FROM jsonb_array_elements(p_items) WITH ORDINALITY ORDER BY ordinality
    LOOP
        BEGIN
            existing := shop_reserve_stock(
                item->>'key', item->'lines', item->>'buyer', p_strategy,
                ARRAY(SELECT (v #>> '{}')::bigint FROM jsonb_array_elements(item->'ids')
                      WITH ORDINALITY AS e(v, n) ORDER BY n),
                ARRAY(SELECT (v #>> '{}')::integer FROM jsonb_array_elements(item->'qty')
                      WITH ORDINALITY AS e(v, n) ORDER BY n),
                ARRAY(SELECT (v #>> '{}')::integer FROM jsonb_array_elements(item->'lim')
                      WITH ORDINALITY AS e(v, n) ORDER BY n)
            );
            outcomes := outcomes || jsonb_build_array(jsonb_build_object('lines', existing));
        EXCEPTION
            WHEN SQLSTATE 'SHMOV' OR SQLSTATE 'SHLIM' OR SQLSTATE 'SHSLD'
                OR foreign_key_violation THEN
                GET STACKED DIAGNOSTICS refused_state = RETURNED_SQLSTATE,
                    refused_detail = PG_EXCEPTION_DETAIL;
                outcomes := outcomes || jsonb_build_array(
                    jsonb_build_object('state', refused_state, 'detail', refused_detail)
                );
        END;
    END LOOP;
    RETURN outcomes;
END
$$
"""


def upgrade() -> None:
    op.execute(RESERVE_FUNCTION)
    op.execute(RESERVE_MANY_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION shop_reserve_stocks(jsonb, text)")
    op.execute(
        "DROP FUNCTION shop_reserve_stock(varchar, jsonb, varchar, text, bigint[], integer[], "
        "integer[])"
    )

"""stock: buyer on reservations, per-buyer tallies, index of open reservations, fence function

Revision ID: 0003_stock
Revises: 0002_orders
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_stock"
down_revision = "0002_orders"
branch_labels = None
depends_on = None


# The switch fence in one call (see shop/adapters/db/stock_fence.py): take the advisory lock
# shared, then read the active strategy. VOLATILE makes the SELECT take its own snapshot,
# after the lock was granted, so it sees a switch that committed while this call waited.
FENCE_FUNCTION = """
CREATE FUNCTION shop_stock_fence(lock_key bigint, strategy text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(lock_key);
    RETURN coalesce(
        (SELECT value = strategy FROM app_setting WHERE name = 'stock_strategy'), false
    );
END
$$
"""


def upgrade() -> None:
    op.execute(FENCE_FUNCTION)
    op.add_column("stock_reservation", sa.Column("buyer", sa.String(length=200), nullable=True))
    op.create_index(
        "stock_reservation_open_idx",
        "stock_reservation",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'confirmed')"),
    )
    op.create_table(
        "stock_buyer_tally",
        sa.Column("option_id", sa.BigInteger(), nullable=False),
        sa.Column("buyer", sa.String(length=200), nullable=False),
        sa.Column("units", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("units >= 0", name=op.f("ck_stock_buyer_tally_units_non_negative")),
        sa.ForeignKeyConstraint(
            ["option_id"],
            ["option.id"],
            name=op.f("fk_stock_buyer_tally_option_id_option"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("option_id", "buyer", name=op.f("pk_stock_buyer_tally")),
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION shop_stock_fence(bigint, text)")
    op.drop_table("stock_buyer_tally")
    op.drop_index(
        "stock_reservation_open_idx",
        table_name="stock_reservation",
        postgresql_where=sa.text("status IN ('pending', 'confirmed')"),
    )
    op.drop_column("stock_reservation", "buyer")

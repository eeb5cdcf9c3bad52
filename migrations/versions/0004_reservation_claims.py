"""reservation claims: one outcome per reservation key (an order, or void); lost counter states

Revision ID: 0004_reservation_claims
Revises: 0003_stock
Create Date: 2026-12-02 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_reservation_claims"
down_revision = "0003_stock"
branch_labels = None
depends_on = None


# The order insert's fence for a reservation taken from the Redis counter (see
# shop/adapters/db/reservation_claims.py): take the stock fence shared, then ask, in a snapshot
# taken after the lock was granted, whether the counter state the reservation came from was
# lost since. A rebuild marks the lost state while holding the fence exclusively, so an order
# insert either committed before the rebuild read the ledger, or finds its reservation lost.
GENERATION_FUNCTION = """
CREATE FUNCTION shop_stock_generation_alive(lock_key bigint, generation text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(lock_key);
    RETURN NOT EXISTS (
        SELECT 1 FROM stock_lost_generation WHERE stock_lost_generation.generation = $2
    );
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "reservation_claim",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column(
            "claimed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "outcome IN ('order', 'void')", name=op.f("ck_reservation_claim_outcome_known")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_reservation_claim")),
    )
    op.execute(
        "INSERT INTO reservation_claim (key, outcome, claimed_at) "
        "SELECT reservation_key, 'order', created_at FROM purchase_order"
    )
    op.create_table(
        "stock_lost_generation",
        sa.Column("generation", sa.String(length=64), nullable=False),
        sa.Column(
            "lost_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("generation", name=op.f("pk_stock_lost_generation")),
    )
    op.execute(GENERATION_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION shop_stock_generation_alive(bigint, text)")
    op.drop_table("stock_lost_generation")
    op.drop_table("reservation_claim")

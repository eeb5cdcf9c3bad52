"""stock: idempotent restocks (one row per Idempotency-Key)

Revision ID: 0005_stock_restock
Revises: 0004_reservation_claims
Create Date: 2026-12-02 18:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_stock_restock"
down_revision = "0004_reservation_claims"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stock_restock",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("option_id", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("counter_generation", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("units > 0", name=op.f("ck_stock_restock_units_positive")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_stock_restock")),
    )


def downgrade() -> None:
    op.drop_table("stock_restock")

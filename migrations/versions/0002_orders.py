"""orders: per-buyer purchase limits

Revision ID: 0002_orders
Revises: 0001
Create Date: 2026-11-25 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_orders"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stock_reservation", sa.Column("buyer", sa.String(length=100), nullable=True))
    op.create_index(
        "stock_reservation_buyer_held_idx",
        "stock_reservation",
        ["buyer"],
        unique=False,
        postgresql_where=sa.text("buyer IS NOT NULL AND status IN ('pending', 'confirmed')"),
    )


def downgrade() -> None:
    op.drop_index("stock_reservation_buyer_held_idx", table_name="stock_reservation")
    op.drop_column("stock_reservation", "buyer")

"""orders: outstanding stock releases, per-buyer purchase limits

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
    op.add_column(
        "purchase_order",
        sa.Column("stock_released_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Orders closed before this revision had their units given back by the code of the time.
    op.execute(
        "UPDATE purchase_order SET stock_released_at = coalesce(cancelled_at, expired_at, now()) "
        "WHERE status IN ('cancelled', 'expired')"
    )
    op.create_index(
        "purchase_order_release_due_idx",
        "purchase_order",
        ["id"],
        unique=False,
        postgresql_where=sa.text(
            "stock_released_at IS NULL AND status IN ('cancelled', 'expired')"
        ),
    )
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
    op.drop_index("purchase_order_release_due_idx", table_name="purchase_order")
    op.drop_column("purchase_order", "stock_released_at")

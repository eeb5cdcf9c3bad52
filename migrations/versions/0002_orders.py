"""orders: outstanding stock releases

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


def downgrade() -> None:
    op.drop_index("purchase_order_release_due_idx", table_name="purchase_order")
    op.drop_column("purchase_order", "stock_released_at")

"""drops: scheduled sales (sale_drop), the drop an option sells in and an order was placed in

Revision ID: 0007_drops
Revises: 0006_payments
Create Date: 2026-12-03 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_drops"
down_revision = "0006_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sale_drop",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("option_ids", sa.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("per_buyer_limit", sa.Integer(), nullable=False),
        sa.Column("max_open_orders_per_buyer", sa.Integer(), nullable=False),
        sa.Column("payment_methods", sa.ARRAY(sa.String(length=30)), nullable=False),
        sa.Column("payment_window_seconds", sa.Integer(), nullable=False),
        sa.Column("queue_enabled", sa.Boolean(), nullable=False),
        sa.Column("admit_per_second", sa.Integer(), nullable=False),
        sa.Column("admission_ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("pre_queue_seconds", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "ends_at IS NULL OR ends_at > starts_at", name=op.f("ck_sale_drop_ends_after_start")
        ),
        sa.CheckConstraint(
            "per_buyer_limit >= 1", name=op.f("ck_sale_drop_per_buyer_limit_positive")
        ),
        sa.CheckConstraint(
            "max_open_orders_per_buyer >= 1", name=op.f("ck_sale_drop_open_orders_positive")
        ),
        sa.CheckConstraint("admit_per_second >= 1", name=op.f("ck_sale_drop_admit_rate_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sale_drop")),
    )
    op.create_index("sale_drop_starts_idx", "sale_drop", ["starts_at"])
    op.add_column("option", sa.Column("drop_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_option_drop_id_sale_drop"),
        "option",
        "sale_drop",
        ["drop_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index(op.f("ix_option_drop_id"), "option", ["drop_id"])
    op.add_column("purchase_order", sa.Column("drop_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_purchase_order_drop_id_sale_drop"),
        "purchase_order",
        "sale_drop",
        ["drop_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_index(
        "purchase_order_drop_unpaid_idx",
        "purchase_order",
        ["drop_id", "user_id"],
        postgresql_where=sa.text("drop_id IS NOT NULL AND status IN ('pending_payment')"),
    )


def downgrade() -> None:
    op.drop_index("purchase_order_drop_unpaid_idx", table_name="purchase_order")
    op.drop_constraint(
        op.f("fk_purchase_order_drop_id_sale_drop"), "purchase_order", type_="foreignkey"
    )
    op.drop_column("purchase_order", "drop_id")
    op.drop_index(op.f("ix_option_drop_id"), table_name="option")
    op.drop_constraint(op.f("fk_option_drop_id_sale_drop"), "option", type_="foreignkey")
    op.drop_column("option", "drop_id")
    op.drop_index("sale_drop_starts_idx", table_name="sale_drop")
    op.drop_table("sale_drop")

"""The PostgreSQL schema as SQLAlchemy models on advanced-alchemy bases.

Only adapters import this module. The domain never sees these classes: repositories translate
rows into domain objects. Money is integer minor units; times are ``timestamptz`` in UTC.

Choices a reader might not expect, all on purpose:
- ``user`` and ``order`` are reserved words in SQL; the tables are ``user_account`` and
  ``purchase_order`` so that no query ever needs quoting.
- ``stock_reservation`` records reservations of the PostgreSQL-backed strategies (``db`` and
  ``redlock``) in the same transaction as the decrement: it makes ``reserve`` idempotent per
  key and lets the sweep find reservations whose order was never written. Its ``buyer``
  column lets a per-buyer purchase limit be checked in that same transaction.
- ``purchase_order.stock_released_at`` records that a cancelled or expired order's units were
  given back, so a release that failed after the status change is retried by a sweep.
- ``app_setting`` holds cluster-wide switches (the active stock strategy) durably.
- ``payment`` is one attempt to pay an order through the gateway (its refund is recorded on
  it); ``payment_event`` is the append-only audit trail of the gateway's verified events,
  whose unique ``provider_event_id`` makes a replayed webhook change nothing.
- ``stock_restock`` records each restock made under an ``Idempotency-Key``, in the
  transaction that raises ``stock_total``, so a retried restock adds nothing more.
- ``drop`` is a reserved word too: drops live in ``sale_drop``. ``option.drop_id`` is the drop
  an option sells in now (at most one), read by the purchase's quote in the same round trip;
  ``purchase_order.drop_id`` records the drop an order was placed in, which the open-order
  cap counts by.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterable
from typing import Any

from advanced_alchemy.base import DefaultBase, IdentityBase, orm_registry
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column
from uuid_utils.compat import uuid7

from shop.domain.orders.status import OrderStatus
from shop.domain.stock.model import ReservationStatus

metadata = orm_registry.metadata


def sql_list(values: Iterable[str]) -> str:
    """``'a', 'b'`` for an ``IN (...)`` in SQL text; only ever given enum values."""
    return ", ".join(f"'{value}'" for value in values)


def _now_column(*, nullable: bool = False) -> Any:
    return mapped_column(
        DateTimeUTC(timezone=True),
        nullable=nullable,
        server_default=None if nullable else text("now()"),
    )


class CategoryRow(IdentityBase):
    __tablename__ = "category"

    parent_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("category.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class ProductRow(IdentityBase):
    __tablename__ = "product"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_non_negative"),
        # Keyset pagination: both sorts are index scans with ties broken by id.
        Index("product_newest_idx", text("created_at DESC"), text("id DESC")),
        Index("product_popular_idx", text("popularity DESC"), text("id DESC")),
    )

    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, server_default=text("''"))
    price: Mapped[int] = mapped_column(BigInteger)
    popularity: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime.datetime] = _now_column()
    updated_at: Mapped[datetime.datetime] = _now_column()


class ProductCategoryRow(DefaultBase):
    __tablename__ = "product_category"
    __table_args__ = (Index("product_category_category_idx", "category_id", "product_id"),)

    product_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("product.id", ondelete="CASCADE"), primary_key=True
    )
    category_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("category.id", ondelete="RESTRICT"), primary_key=True
    )


class OptionRow(IdentityBase):
    """An option ("red / L") is the unit that has stock and is bought.

    ``stock_total`` is every unit ever put on sale; ``stock`` is what is left. ``stock >= 0`` is
    the last line of defence against oversell, never the mechanism.
    """

    __tablename__ = "option"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_non_negative"),
        CheckConstraint("stock <= stock_total", name="stock_within_total"),
        CheckConstraint("price >= 0", name="price_non_negative"),
    )

    product_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("product.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[int] = mapped_column(BigInteger)
    stock_total: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    stock: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    position: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    drop_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("sale_drop.id", ondelete="SET NULL"), index=True
    )


class DropRow(IdentityBase):
    """A scheduled sale of a set of options under one set of rules (``domain/drops``)."""

    __tablename__ = "sale_drop"
    __table_args__ = (
        Index("sale_drop_starts_idx", "starts_at"),
        CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("per_buyer_limit >= 1", name="per_buyer_limit_positive"),
        CheckConstraint("max_open_orders_per_buyer >= 1", name="open_orders_positive"),
        CheckConstraint("admit_per_second >= 1", name="admit_rate_positive"),
    )

    name: Mapped[str] = mapped_column(String(200))
    option_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    starts_at: Mapped[datetime.datetime] = mapped_column(DateTimeUTC(timezone=True))
    ends_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    per_buyer_limit: Mapped[int] = mapped_column(Integer)
    max_open_orders_per_buyer: Mapped[int] = mapped_column(Integer)
    payment_methods: Mapped[list[str]] = mapped_column(ARRAY(String(30)))
    payment_window_seconds: Mapped[int] = mapped_column(Integer)
    queue_enabled: Mapped[bool] = mapped_column(Boolean)
    admit_per_second: Mapped[int] = mapped_column(Integer)
    admission_ttl_seconds: Mapped[int] = mapped_column(Integer)
    pre_queue_seconds: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime.datetime] = _now_column()


class ProductImageRow(IdentityBase):
    __tablename__ = "product_image"
    __table_args__ = (Index("product_image_product_idx", "product_id", "position"),)

    product_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("product.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(String(2048))
    position: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class UserRow(DefaultBase):
    __tablename__ = "user_account"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(20), server_default=text("'customer'"))
    created_at: Mapped[datetime.datetime] = _now_column()


class RefreshTokenRow(IdentityBase):
    """Opaque refresh tokens, stored hashed; a family is one login's chain of rotations."""

    __tablename__ = "refresh_token"
    __table_args__ = (Index("refresh_token_family_idx", "family"),)

    family: Mapped[uuid.UUID] = mapped_column(Uuid)
    jti: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime.datetime] = mapped_column(DateTimeUTC(timezone=True))
    used_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime.datetime] = _now_column()


class OrderRow(DefaultBase):
    __tablename__ = "purchase_order"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="purchase_order_idempotency_key"),
        CheckConstraint("total >= 0", name="total_non_negative"),
        Index(
            "purchase_order_user_newest_idx", "user_id", text("created_at DESC"), text("id DESC")
        ),
        Index(
            "purchase_order_pending_pay_by_idx",
            "pay_by",
            postgresql_where=text(f"status = '{OrderStatus.PENDING_PAYMENT.value}'"),
        ),
        # A drop's open-order cap counts a customer's unpaid orders in the drop.
        Index(
            "purchase_order_drop_unpaid_idx",
            "drop_id",
            "user_id",
            postgresql_where=text(
                f"drop_id IS NOT NULL AND status IN "
                f"({sql_list(OrderStatus.values(OrderStatus.UNPAID))})"
            ),
        ),
        # The sweep's backlog: closed orders whose units the stock port has not taken back.
        Index(
            "purchase_order_release_due_idx",
            "id",
            postgresql_where=text(
                "stock_released_at IS NULL AND "
                f"status IN ({sql_list(OrderStatus.values(OrderStatus.CLOSED))})"
            ),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="RESTRICT")
    )
    status: Mapped[str] = mapped_column(String(30))
    payment_method: Mapped[str] = mapped_column(String(30))
    pay_by: Mapped[datetime.datetime] = mapped_column(DateTimeUTC(timezone=True))
    total: Mapped[int] = mapped_column(BigInteger)
    shipping_address: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # The stock reservation this order holds (``StockReservation`` key); the sweep uses it to
    # tell a reservation whose order was written from one whose order never was.
    reservation_key: Mapped[str] = mapped_column(String(300), unique=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = _now_column()
    paid_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    shipped_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    delivered_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    cancelled_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    expired_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    refunded_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    # Set once the stock port released a cancelled/expired order's units; unset while that
    # release is outstanding (it failed after the status commit), so the sweep retries it.
    stock_released_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    drop_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("sale_drop.id", ondelete="RESTRICT")
    )


class PaymentRow(DefaultBase):
    __tablename__ = "payment"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="payment_amount_non_negative"),
        Index("payment_order_idx", "order_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    order_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("purchase_order.id", ondelete="RESTRICT")
    )
    provider: Mapped[str] = mapped_column(String(40))
    provider_reference: Mapped[str] = mapped_column(String(200))
    checkout_url: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime.datetime] = _now_column()
    expires_at: Mapped[datetime.datetime] = _now_column()
    updated_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    succeeded_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    failed_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    refund_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    refund_reason: Mapped[str | None] = mapped_column(String(30), nullable=True)
    refund_requested_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    refunded_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)
    refund_failed_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)


class PaymentEventRow(IdentityBase):
    __tablename__ = "payment_event"

    provider_event_id: Mapped[str] = mapped_column(String(200), unique=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("payment.id", ondelete="RESTRICT"), index=True
    )
    type: Mapped[str] = mapped_column(String(40))
    payload_digest: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime.datetime] = _now_column()


class OrderLineRow(IdentityBase):
    __tablename__ = "order_line"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_non_negative"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("purchase_order.id", ondelete="CASCADE"), index=True
    )
    option_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("option.id", ondelete="RESTRICT"), index=True
    )
    product_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("product.id", ondelete="RESTRICT"), index=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)


class WishRow(DefaultBase):
    __tablename__ = "wish"
    __table_args__ = (
        Index("wish_user_newest_idx", "user_id", text("created_at DESC"), "product_id"),
        Index("wish_product_recent_idx", "product_id", "created_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("product.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime.datetime] = _now_column()


class StockReservationRow(DefaultBase):
    """A reservation made by a PostgreSQL-backed strategy, written with its decrement.

    ``status``: ``pending`` → ``confirmed`` (its order is written) → ``released`` (units back)
    or ``sold`` (its order shipped: it can no longer be released); ``moved`` while the counter
    strategy holds it in Redis. ``buyer`` is whom the per-buyer limit counts it against.
    """

    __tablename__ = "stock_reservation"
    __table_args__ = (
        Index(
            "stock_reservation_pending_idx",
            "created_at",
            postgresql_where=text(f"status = '{ReservationStatus.PENDING.value}'"),
        ),
        Index(
            "stock_reservation_open_idx",
            "created_at",
            postgresql_where=text(
                f"status IN ({sql_list(ReservationStatus.values(ReservationStatus.OPEN))})"
            ),
        ),
    )

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    lines: Mapped[dict[str, int]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(
        String(20), server_default=text(f"'{ReservationStatus.PENDING.value}'")
    )
    buyer: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime.datetime] = _now_column()
    settled_at: Mapped[datetime.datetime | None] = _now_column(nullable=True)


class StockBuyerTallyRow(DefaultBase):
    """Units of an option one buyer holds through unreleased reservations (per-buyer limit).

    Kept by the PostgreSQL-backed strategies in the reservation's transaction; the row lock
    taken by the increment is what makes the limit race-free.
    """

    __tablename__ = "stock_buyer_tally"
    __table_args__ = (CheckConstraint("units >= 0", name="units_non_negative"),)

    option_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("option.id", ondelete="CASCADE"), primary_key=True
    )
    buyer: Mapped[str] = mapped_column(String(200), primary_key=True)
    units: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class AppSettingRow(DefaultBase):
    __tablename__ = "app_setting"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime.datetime] = _now_column()


class ReservationClaimRow(DefaultBase):
    """What became of a stock reservation key, decided once: ``order`` (an order holds it) or
    ``void`` (abandoned: no order may ever hold it, so its units may go back on sale).

    The order insert and the sweep both insert here, and the primary key makes the second of
    two racing inserts wait for the first to commit and then find its outcome: that is what
    makes "release unless an order holds it" atomic (see ``reservation_claims``).
    """

    __tablename__ = "reservation_claim"
    __table_args__ = (CheckConstraint("outcome IN ('order', 'void')", name="outcome_known"),)

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(8))
    claimed_at: Mapped[datetime.datetime] = _now_column()


class StockLostGenerationRow(DefaultBase):
    """Counter states Redis lost (their generation id): reservations taken from one of them
    can no longer be turned into orders, because the rebuild already counted their units."""

    __tablename__ = "stock_lost_generation"

    generation: Mapped[str] = mapped_column(String(64), primary_key=True)
    lost_at: Mapped[datetime.datetime] = _now_column()


class StockRestockRow(DefaultBase):
    """A restock made under an idempotency key, written with its ``stock_total`` increase.

    ``counter_generation`` is the counter state (``app_setting['stock_counter_generation']``)
    the units were committed under, when the counter strategy served: a retry adds the
    units to the Redis counter only while that same generation lives (a rebuild since then
    read them from the ledger already). No foreign key to ``option``: the record is history,
    and a product delete must not queue behind it.
    """

    __tablename__ = "stock_restock"
    __table_args__ = (CheckConstraint("units > 0", name="units_positive"),)

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    option_id: Mapped[int] = mapped_column(BigInteger)
    units: Mapped[int] = mapped_column(Integer)
    counter_generation: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = _now_column()

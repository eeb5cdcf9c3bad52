"""Orders over HTTP: purchase, cancel, refund, ship, deliver.

There is no route by which a customer marks an order paid: payment state comes only from the
gateway's signed webhook (``entrypoints/http/payments.py``).

Handlers parse, call one use case and render; the rules (and every refusal) live in
``shop.domain.orders``. The customer is always the token's principal: someone else's order
is a 404, like a missing one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from shop.bootstrap import Container
from shop.domain.idempotency import MAX_IDEMPOTENCY_KEY_LENGTH
from shop.domain.identity.model import Principal
from shop.domain.orders import services
from shop.domain.orders.model import (
    MAX_LINE_QUANTITY,
    MAX_ORDER_LINES,
    Order,
    OrderCursor,
    OrderPage,
    PaymentMethod,
    PlaceOrder,
)
from shop.domain.paging import MAX_CURSOR_LENGTH
from shop.domain.stock.model import Line
from shop.entrypoints.http.auth import requires_admin
from shop.entrypoints.http.bounds import NOT_BLANK, Id
from shop.entrypoints.http.openapi import raises

IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=NOT_BLANK,
        description="Client-chosen key; repeating a request with it returns the same order.",
    ),
]


class OrderLineIn(msgspec.Struct, forbid_unknown_fields=True):
    option_id: Id
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_LINE_QUANTITY)]


class OrderIn(msgspec.Struct, forbid_unknown_fields=True):
    """Prices are not part of the request: the server reads them from the catalog."""

    lines: Annotated[list[OrderLineIn], msgspec.Meta(min_length=1, max_length=MAX_ORDER_LINES)]
    payment_method: PaymentMethod
    shipping_address: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=NOT_BLANK)]

    def to_command(
        self, user_id: uuid.UUID, idempotency_key: str, admission_token: str | None = None
    ) -> PlaceOrder:
        return PlaceOrder(
            user_id=user_id,
            idempotency_key=idempotency_key,
            lines=tuple(Line(line.option_id, line.quantity) for line in self.lines),
            payment_method=self.payment_method,
            shipping_address=self.shipping_address,
            admission_token=admission_token,
        )


class OrderLineOut(msgspec.Struct):
    option_id: int
    product_id: int
    quantity: int
    unit_price: int
    subtotal: int


class OrderOut(msgspec.Struct):
    id: uuid.UUID
    status: str
    payment_method: str
    pay_by: datetime
    total: int
    shipping_address: str
    lines: list[OrderLineOut]
    created_at: datetime
    # The drop the order was placed in (its rules set pay_by and the limits); null outside.
    drop_id: int | None = None
    paid_at: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None
    expired_at: datetime | None = None
    refunded_at: datetime | None = None

    @classmethod
    def from_domain(cls, order: Order) -> OrderOut:
        return cls(
            id=order.id,
            status=order.status.value,
            payment_method=order.payment_method.value,
            pay_by=order.pay_by,
            total=order.total,
            shipping_address=order.shipping_address,
            lines=[
                OrderLineOut(
                    option_id=line.option_id,
                    product_id=line.product_id,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    subtotal=line.subtotal,
                )
                for line in order.lines
            ],
            created_at=order.created_at,
            drop_id=order.drop_id,
            paid_at=order.paid_at,
            shipped_at=order.shipped_at,
            delivered_at=order.delivered_at,
            cancelled_at=order.cancelled_at,
            expired_at=order.expired_at,
            refunded_at=order.refunded_at,
        )


class OrderPageOut(msgspec.Struct):
    items: list[OrderOut]
    next_cursor: str | None

    @classmethod
    def from_domain(cls, page: OrderPage) -> OrderPageOut:
        return cls(
            items=[OrderOut.from_domain(order) for order in page.items],
            next_cursor=None if page.next_cursor is None else page.next_cursor.token(),
        )


class OrderController(Controller):
    path = "/api/orders"
    tags = ["orders"]

    @post(
        operation_id="PlaceOrder",
        responses=raises(403, 409, also=(200, OrderOut)),
        summary="Buy: reserve the stock and place an order awaiting payment",
        description="201 with the new order; 200 with the same order when the request is "
        "repeated with the same Idempotency-Key; 409 when an option is sold out (or a "
        "drop's rule refuses it); 403 in a queued drop without a valid Admission-Token.",
    )
    async def place(
        self,
        data: JSONBody[OrderIn],
        idempotency_key: IdempotencyKey,
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
        admission_token: Annotated[
            str | None,
            HeaderParameter(
                name="Admission-Token",
                required=False,
                max_length=200,
                description="The waiting room's admission, for a drop with a queue.",
            ),
        ] = None,
    ) -> Response[OrderOut]:
        placed = await container.order_cases.place(
            data.to_command(principal.user_id, idempotency_key, admission_token)
        )
        return Response(
            OrderOut.from_domain(placed.order),
            status_code=HTTP_201_CREATED if placed.created else HTTP_200_OK,
            headers={"Location": f"{self.path}/{placed.order.id}"},
        )

    @get(operation_id="ListOrders", summary="My orders, newest first (expired ones hidden)")
    async def list_orders(
        self,
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
        limit: Annotated[int, QueryParameter(ge=1, le=services.MAX_PAGE_SIZE)] = 20,
        cursor: Annotated[
            str | None,
            QueryParameter(
                description="next_cursor of the previous page", max_length=MAX_CURSOR_LENGTH
            ),
        ] = None,
    ) -> OrderPageOut:
        page = await container.order_cases.page(
            principal.user_id,
            limit=limit,
            after=None if cursor is None else OrderCursor.parse(cursor),
        )
        return OrderPageOut.from_domain(page)

    @get("/{order_id:uuid}", operation_id="GetOrder", summary="One of my orders")
    async def get_order(
        self,
        order_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
    ) -> OrderOut:
        order = await container.order_cases.get(order_id, user_id=principal.user_id)
        return OrderOut.from_domain(order)

    @post(
        "/{order_id:uuid}/cancel",
        operation_id="CancelOrder",
        responses=raises(409),
        status_code=HTTP_200_OK,
        summary="Cancel before shipping; the units go back on sale (a paid order is refunded)",
    )
    async def cancel(
        self,
        order_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
    ) -> OrderOut:
        order = await container.payment_cases.cancel(order_id, user_id=principal.user_id)
        return OrderOut.from_domain(order)

    @post(
        "/{order_id:uuid}/refund",
        operation_id="RefundOrder",
        responses=raises(409),
        status_code=HTTP_200_OK,
        summary="Ask for a refund of a delivered order, within the refund window",
        description="The order becomes refund_pending and the payment gateway is asked to "
        "return the money; its refund.succeeded webhook makes the order refunded.",
    )
    async def refund(
        self,
        order_id: FromPath[uuid.UUID],
        principal: NamedDependency[Principal],
        container: NamedDependency[Container],
    ) -> OrderOut:
        order = await container.payment_cases.refund(order_id, user_id=principal.user_id)
        return OrderOut.from_domain(order)


class AdminOrderController(Controller):
    path = "/api/admin/orders"
    tags = ["orders", "admin"]
    guards = [requires_admin]

    @post(
        "/{order_id:uuid}/ship",
        operation_id="ShipOrder",
        responses=raises(409),
        status_code=HTTP_200_OK,
        summary="Hand a paid order to the carrier (it can no longer be cancelled)",
    )
    async def ship(
        self, order_id: FromPath[uuid.UUID], container: NamedDependency[Container]
    ) -> OrderOut:
        order = await container.order_cases.ship(order_id)
        return OrderOut.from_domain(order)

    @post(
        "/{order_id:uuid}/deliver",
        operation_id="DeliverOrder",
        responses=raises(409),
        status_code=HTTP_200_OK,
        summary="Record delivery (the refund window starts now)",
    )
    async def deliver(
        self, order_id: FromPath[uuid.UUID], container: NamedDependency[Container]
    ) -> OrderOut:
        order = await container.order_cases.deliver(order_id)
        return OrderOut.from_domain(order)

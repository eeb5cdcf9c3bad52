"""Group commit of the purchase path on the real PostgreSQL: concurrent quotes and order
inserts of one process go as one statement, and each caller gets the outcome its own
statement would have given (written, twin, voided claim, lost generation, refused key)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from shop.adapters.db.orders import SqlOrders
from shop.adapters.db.purchase_statements import ADD, ADD_ORDERS, QUOTE, QUOTES
from shop.adapters.db.reservation_claims import mark_generation_lost
from shop.bootstrap import Container
from shop.domain.errors import OptionWithdrawn, Unauthorized
from shop.domain.orders.model import (
    OptionPrice,
    Order,
    OrderRules,
    PaymentMethod,
    PlaceOrder,
    Quote,
)
from shop.domain.stock.model import Line
from tests.factories import make_option, make_user


class CountingOrders(SqlOrders):
    """The real repository, recording each statement it sends."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.sent: list[str] = []

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        self.sent.append(sql)
        return await super()._fetch(sql, *args)


def an_order(
    user_id: uuid.UUID, key: str, option_id: int, *, product_id: int = 0, price: int = 500
) -> Order:
    cmd = PlaceOrder(
        user_id=user_id,
        idempotency_key=key,
        lines=(Line(option_id, 1),),
        payment_method=PaymentMethod.CARD,
        shipping_address="1 Main St",
    )
    prices = {option_id: OptionPrice(option_id, product_id, price)}
    return Order.place(
        cmd, cmd.lines, prices, order_id=uuid7(), now=datetime.now(UTC), rules=OrderRules()
    )


async def product_of(container: Container, option_id: int) -> int:
    quote = await container.orders.quote(uuid.uuid4(), "probe", [option_id])
    return quote.prices[option_id].product_id


async def test_concurrent_adds_with_mixed_outcomes_share_one_statement(clean: Container) -> None:
    option = await make_option(clean, stock=10, price=500)
    product = await product_of(clean, option)
    user_id, _ = await make_user(clean)
    orders = CountingOrders(clean.engine)
    good = [an_order(user_id, f"good-{i}", option, product_id=product) for i in range(3)]
    twin = an_order(user_id, "twin", option, product_id=product)
    twin_again = dataclasses.replace(twin, id=uuid7())
    voided = an_order(user_id, "voided", option, product_id=product)
    assert await orders.abandon(voided.reservation_key)  # the sweep claimed it first
    lost = an_order(user_id, "lost", option, product_id=product)
    async with clean.engine.begin() as conn:
        await mark_generation_lost(conn, "generation-lost")
    orders.sent.clear()

    outcomes = await asyncio.gather(
        orders.add(good[0]),
        orders.add(twin),
        orders.add(voided),
        orders.add(good[1], stock_generation="generation-alive"),
        orders.add(twin_again),
        orders.add(lost, stock_generation="generation-lost"),
        orders.add(good[2]),
    )

    assert outcomes == [True, True, False, True, False, False, True]
    assert orders.sent == [ADD_ORDERS]
    for order in (*good, twin):
        assert await orders.get(order.id) == order
    for order in (twin_again, voided, lost):
        assert await orders.get(order.id) is None


async def test_a_withdrawn_option_or_deleted_account_fails_only_its_own_caller(
    clean: Container,
) -> None:
    option = await make_option(clean, stock=10, price=500)
    product = await product_of(clean, option)
    user_id, _ = await make_user(clean)
    orders = CountingOrders(clean.engine)
    good = an_order(user_id, "good", option, product_id=product)
    twin = dataclasses.replace(good, id=uuid7())
    withdrawn = an_order(user_id, "withdrawn", 987_654_321, product_id=product)
    stranger = an_order(uuid.uuid4(), "stranger", option, product_id=product)
    other = an_order(user_id, "other", option, product_id=product)

    outcomes = await asyncio.gather(
        orders.add(good),
        orders.add(withdrawn),
        orders.add(twin),
        orders.add(stranger),
        orders.add(other),
        return_exceptions=True,
    )

    assert outcomes[0] is True and outcomes[2] is False and outcomes[4] is True
    assert isinstance(outcomes[1], OptionWithdrawn)
    assert isinstance(outcomes[3], Unauthorized)
    # The batch aborted as a whole, then each order went again on its own.
    assert orders.sent.count(ADD_ORDERS) == 1
    assert orders.sent.count(ADD) == 5
    assert await orders.get(good.id) == good
    assert await orders.get(other.id) == other
    assert await orders.get(twin.id) is None


async def test_a_lone_order_or_quote_keeps_its_single_row_statement(clean: Container) -> None:
    option = await make_option(clean, stock=5, price=500)
    product = await product_of(clean, option)
    user_id, _ = await make_user(clean)
    orders = CountingOrders(clean.engine)
    assert (await orders.quote(user_id, "lone", [option])).prices[option].price == 500
    assert await orders.add(an_order(user_id, "lone", option, product_id=product))
    with pytest.raises(OptionWithdrawn):
        await orders.add(an_order(user_id, "gone", 987_654_321, product_id=product))
    assert orders.sent[:3] == [QUOTE, ADD, ADD]  # then the refusal's look-up


async def test_concurrent_quotes_share_one_statement_and_each_gets_its_own(
    clean: Container,
) -> None:
    cheap = await make_option(clean, stock=5, price=300)
    dear = await make_option(clean, stock=5, price=9_000)
    product = await product_of(clean, cheap)
    buyer, _ = await make_user(clean)
    other, _ = await make_user(clean)
    placed = an_order(buyer, "placed", cheap, product_id=product, price=300)
    assert await clean.orders.add(placed)
    assert await clean.orders.abandon(f"order:{other}:given-up")
    orders = CountingOrders(clean.engine)

    asks: list[tuple[uuid.UUID, str, list[int]]] = [
        (buyer, "placed", [cheap]),
        (buyer, "new", [cheap, dear, 999_999]),
        (other, "given-up", [dear]),
        (other, "unknown", [999_999]),
        (other, "nothing", []),
    ]
    together = await asyncio.gather(*(orders.quote(*ask) for ask in asks))

    assert orders.sent == [QUOTES]
    alone: list[Quote] = [await clean.orders.quote(*ask) for ask in asks]
    assert together == alone
    assert together[0].existing_order_id == placed.id
    assert {o: p.price for o, p in together[1].prices.items()} == {cheap: 300, dear: 9_000}
    assert together[1].existing_order_id is None and not together[1].abandoned
    assert together[2].abandoned and together[2].existing_order_id is None
    assert together[3].prices == {} and together[4].prices == {}


async def test_purchases_arriving_during_a_batch_go_together_next(clean: Container) -> None:
    option = await make_option(clean, stock=50, price=500)
    product = await product_of(clean, option)
    user_id, _ = await make_user(clean)
    orders = CountingOrders(clean.engine)
    first = asyncio.create_task(orders.add(an_order(user_id, "first", option, product_id=product)))
    await asyncio.sleep(0)  # the first batch is on its way with the first order alone
    rest = [an_order(user_id, f"next-{i}", option, product_id=product) for i in range(20)]
    outcomes = await asyncio.gather(*(orders.add(order) for order in rest))
    assert await first is True
    assert outcomes == [True] * 20
    assert orders.sent.count(ADD) == 1 and orders.sent.count(ADD_ORDERS) == 1

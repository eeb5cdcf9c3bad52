"""Payments over real HTTP: only the gateway's signed webhook pays an order.

The sandbox is driven as a customer would (checkout page, Pay / Decline buttons), and its
deliveries run through the worker's own job function, which POSTs the signed event to the
app. Everything else talks to the webhook as a provider would.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import func, select

from shop.adapters.db.tables import PaymentEventRow
from shop.bootstrap import Container, webhook_secret_of
from shop.domain.identity.model import Role
from shop.domain.payments.signature import SIGNATURE_HEADER
from shop.entrypoints.http.app import create_app
from tests.conftest import http_client
from tests.factories import make_option, make_user
from tests.orders_client import act, admin, order_body, place, stock_and_ledger, with_settings
from tests.payments_client import (
    event,
    pay,
    payments_of,
    run_sandbox_job,
    send,
    signed,
    start_payment,
)


@pytest.fixture
async def customer(clean: Container) -> dict[str, str]:
    _, headers = await make_user(clean)
    return headers


@pytest.fixture
async def admin_headers(clean: Container) -> dict[str, str]:
    _, headers = await make_user(clean, role=Role.ADMIN)
    return headers


async def _order(
    client: httpx.AsyncClient,
    clean: Container,
    customer: dict[str, str],
    *,
    method: str = "card",
    price: int = 700,
) -> dict[str, object]:
    option = await make_option(clean, stock=5, price=price)
    placed = await place(client, customer, order_body((option, 2), payment_method=method))
    assert placed.status_code == 201, placed.text
    return dict(placed.json())


async def _events(clean: Container) -> int:
    async with clean.engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(PaymentEventRow))).scalar_one()
        )


async def test_no_route_lets_a_customer_mark_an_order_paid(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    order = await _order(client, clean, customer)
    old = await client.post(
        f"/api/orders/{order['id']}/pay", json={"amount": 1400}, headers=customer
    )
    assert old.status_code in (404, 405)
    unsigned = await client.post(
        "/api/payments/webhook",
        json=event({"payment_id": str(uuid.uuid4()), "amount": 1400, "currency": "EUR"}),
        headers=customer,
    )
    assert unsigned.status_code == 400
    schema = (await client.get("/schema/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.endswith("/pay")]
    fetched = await client.get(f"/api/orders/{order['id']}", headers=customer)
    assert fetched.json()["status"] == "pending_payment"


@pytest.mark.parametrize("method", ["card", "bank_transfer"])
async def test_a_purchase_through_the_sandbox_checkout_ends_paid(
    client: httpx.AsyncClient,
    app: Litestar,
    clean: Container,
    customer: dict[str, str],
    method: str,
) -> None:
    order = await _order(client, clean, customer, method=method)
    started = await start_payment(client, customer, str(order["id"]))
    assert started.status_code == 201, started.text
    payment = started.json()
    assert payment["status"] == "pending"
    assert (payment["amount"], payment["currency"]) == (1400, "EUR")
    assert payment["expires_at"] == order["pay_by"]
    again = await start_payment(client, customer, str(order["id"]))
    assert (again.status_code, again.json()["payment_id"]) == (200, payment["payment_id"])

    path = httpx.URL(payment["checkout_url"]).path
    assert path == f"/sandbox/checkout/{payment['payment_id']}"
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'action="' + path + '/pay"' in page.text and "Decline" in page.text
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", ""), "no assets"

    pressed = await client.post(f"{path}/pay")
    assert pressed.status_code == 200
    still = await client.get(f"/api/orders/{order['id']}", headers=customer)
    assert still.json()["status"] == "pending_payment", "the press only enqueues the webhook"
    key = f"sandbox:{payment['payment_id']}:payment.succeeded:-"
    assert await run_sandbox_job(clean, app, key) == 200
    paid = await client.get(f"/api/orders/{order['id']}", headers=customer)
    assert paid.json()["status"] == "paid"
    assert paid.json()["paid_at"] is not None
    assert await _events(clean) == 1


async def test_a_declined_payment_leaves_the_order_payable_again(
    client: httpx.AsyncClient, app: Litestar, clean: Container, customer: dict[str, str]
) -> None:
    order = await _order(client, clean, customer)
    payment = (await start_payment(client, customer, str(order["id"]))).json()
    await client.post(f"/sandbox/checkout/{payment['payment_id']}/decline")
    await run_sandbox_job(clean, app, f"sandbox:{payment['payment_id']}:payment.failed:-")
    retry = await start_payment(client, customer, str(order["id"]))
    assert retry.status_code == 201
    assert retry.json()["payment_id"] != payment["payment_id"]
    status = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()["status"]
    assert status == "pending_payment"


async def test_twenty_concurrent_replays_of_one_webhook_pay_once(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    order = await _order(client, clean, customer)
    payment = (await start_payment(client, customer, str(order["id"]))).json()
    raw, headers = signed(clean, event(payment))
    answers = await asyncio.gather(
        *(client.post("/api/payments/webhook", content=raw, headers=headers) for _ in range(20))
    )
    assert [a.status_code for a in answers] == [200] * 20
    assert sorted(a.json()["outcome"] for a in answers) == ["applied"] + ["replayed"] * 19
    assert await _events(clean) == 1
    paid = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()
    assert paid["status"] == "paid"


@pytest.mark.parametrize(
    "fault", ["tampered", "wrong_secret", "ten_minutes_old", "missing", "malformed"]
)
async def test_a_bad_signature_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str], fault: str
) -> None:
    order = await _order(client, clean, customer)
    payment = (await start_payment(client, customer, str(order["id"]))).json()
    raw, headers = signed(
        clean,
        event(payment),
        secret="whsec_not_the_shops_0123456789abcdef012" if fault == "wrong_secret" else None,
        timestamp=int(time.time()) - 600 if fault == "ten_minutes_old" else None,
    )
    if fault == "tampered":
        raw = raw.replace(b'"amount":1400', b'"amount":1')
    if fault == "missing":
        del headers[SIGNATURE_HEADER]
    if fault == "malformed":
        headers[SIGNATURE_HEADER] = "v1=deadbeef"
    refused = await client.post("/api/payments/webhook", content=raw, headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["status_code"] == 400
    assert await _events(clean) == 0
    status = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()["status"]
    assert status == "pending_payment"


async def test_bad_events_are_clear_4xx_and_write_nothing(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    order = await _order(client, clean, customer)
    payment = (await start_payment(client, customer, str(order["id"]))).json()
    unknown = await send(client, clean, event({**payment, "payment_id": str(uuid.uuid4())}))
    assert unknown.status_code == 404
    mismatch = await send(client, clean, event(payment, amount=1399))
    assert mismatch.status_code == 422
    currency = await send(client, clean, event(payment, currency="USD"))
    assert currency.status_code == 422
    other_order = await send(client, clean, event(payment, order_id=str(uuid.uuid4())))
    assert other_order.status_code == 422
    raw, headers = signed(clean, b"{not json")
    broken = await client.post("/api/payments/webhook", content=raw, headers=headers)
    assert broken.status_code == 400
    raw, headers = signed(clean, {"id": "evt_x", "type": "payment.teleported", "created": 1})
    odd = await client.post("/api/payments/webhook", content=raw, headers=headers)
    assert odd.status_code == 400
    assert await _events(clean) == 0
    status = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()["status"]
    assert status == "pending_payment"


async def test_starting_a_payment_is_the_owners_and_only_while_payable(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str]
) -> None:
    order = await _order(client, clean, customer)
    _, stranger = await make_user(clean)
    assert (await start_payment(client, stranger, str(order["id"]))).status_code == 404
    await act(client, customer, str(order["id"]), "cancel")
    refused = await start_payment(client, customer, str(order["id"]))
    assert refused.status_code == 409
    assert refused.json()["extra"] == {"state": "cancelled"}


async def test_a_success_after_expiry_is_refunded_automatically(
    clean: Container, customer: dict[str, str], admin_headers: dict[str, str]
) -> None:
    quick = with_settings(clean, card_payment_ttl=0.5)
    app = create_app(quick)
    async with http_client(app) as client:
        option = await make_option(clean, stock=2, price=300)
        order = (await place(client, customer, order_body((option, 2)))).json()
        payment = (await start_payment(client, customer, order["id"])).json()
        await asyncio.sleep(0.6)
        assert (await start_payment(client, customer, order["id"])).status_code == 409
        late = await send(client, quick, event(payment))
        assert late.status_code == 200, late.text
        final = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()
        assert final["status"] == "expired"
        assert await stock_and_ledger(clean, option) == (2, 2)
        (refunding,) = await payments_of(client, admin_headers, order["id"])
        assert (refunding["status"], refunding["refund_reason"]) == ("refund_pending", "late")
        key = f"sandbox:{payment['payment_id']}:refund.succeeded:{refunding['refund_id']}"
        assert await run_sandbox_job(quick, app, key) == 200
        (refunded,) = await payments_of(client, admin_headers, order["id"])
        assert refunded["status"] == "refunded"
        final = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()
        assert final["status"] == "expired", "the order is left as it was"


async def _delivered(
    client: httpx.AsyncClient, clean: Container, customer: dict[str, str], admin_h: dict[str, str]
) -> str:
    order = await _order(client, clean, customer)
    order_id = str(order["id"])
    assert (await pay(client, clean, customer, order_id)).json()["status"] == "paid"
    await admin(client, admin_h, order_id, "ship")
    await admin(client, admin_h, order_id, "deliver")
    return order_id


async def test_a_refund_ends_refunded_through_the_gateway(
    client: httpx.AsyncClient,
    app: Litestar,
    clean: Container,
    customer: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    order_id = await _delivered(client, clean, customer, admin_headers)
    asked = await act(client, customer, order_id, "refund")
    assert asked.json()["status"] == "refund_pending"
    again = await act(client, customer, order_id, "refund")
    assert again.status_code == 200 and again.json()["status"] == "refund_pending"
    (payment,) = await payments_of(client, admin_headers, order_id)
    # The sandbox's page offers to confirm the refund too; its job reports refund.succeeded.
    key = f"sandbox:{payment['payment_id']}:refund.succeeded:{payment['refund_id']}"
    assert await run_sandbox_job(clean, app, key) == 200
    done = (await client.get(f"/api/orders/{order_id}", headers=customer)).json()
    assert done["status"] == "refunded"
    assert done["refunded_at"] is not None


async def test_a_failed_refund_puts_the_order_back_to_delivered_and_may_be_asked_again(
    client: httpx.AsyncClient,
    clean: Container,
    customer: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    order_id = await _delivered(client, clean, customer, admin_headers)
    await act(client, customer, order_id, "refund")
    (payment,) = await payments_of(client, admin_headers, order_id)
    failed = await send(
        client, clean, event(payment, "refund.failed", refund_id=payment["refund_id"])
    )
    assert failed.status_code == 200, failed.text
    back = (await client.get(f"/api/orders/{order_id}", headers=customer)).json()
    assert back["status"] == "delivered"
    (recorded,) = await payments_of(client, admin_headers, order_id)
    assert recorded["status"] == "succeeded" and recorded["refund_failed_at"] is not None
    wrong = await send(client, clean, event(payment, "refund.succeeded", refund_id="re_other"))
    assert wrong.status_code == 422
    await act(client, customer, order_id, "refund")
    (second,) = await payments_of(client, admin_headers, order_id)
    ok = await send(
        client, clean, event(payment, "refund.succeeded", refund_id=second["refund_id"])
    )
    assert ok.status_code == 200
    done = (await client.get(f"/api/orders/{order_id}", headers=customer)).json()
    assert done["status"] == "refunded"


async def test_cancelling_a_paid_order_refunds_it(
    client: httpx.AsyncClient,
    clean: Container,
    customer: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    order = await _order(client, clean, customer)
    await pay(client, clean, customer, str(order["id"]))
    cancelled = await act(client, customer, str(order["id"]), "cancel")
    assert cancelled.json()["status"] == "cancelled"
    (payment,) = await payments_of(client, admin_headers, str(order["id"]))
    assert (payment["status"], payment["refund_reason"]) == ("refund_pending", "cancelled")


async def test_the_sandbox_signs_as_stripe_does_and_the_shop_takes_a_stripe_made_header(
    client: httpx.AsyncClient, app: Litestar, clean: Container, customer: dict[str, str]
) -> None:
    stripe = pytest.importorskip("stripe")
    secret = webhook_secret_of(clean.settings)
    order = await _order(client, clean, customer)
    payment = (await start_payment(client, customer, str(order["id"]))).json()

    seen: list[httpx.Request] = []

    async def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    from shop.adapters.payments.webhook_delivery import HttpWebhookDelivery

    sandbox_sender = HttpWebhookDelivery(
        "http://shop.example", secret, transport=httpx.MockTransport(capture)
    )
    await sandbox_sender.deliver(httpx.Request("POST", "/", json=event(payment)).content.decode())
    (sent,) = seen
    checked = stripe.Webhook.construct_event(
        sent.content.decode(), sent.headers[SIGNATURE_HEADER], secret
    )
    assert checked["data"]["payment_id"] == payment["payment_id"]

    body = httpx.Request("POST", "/", json=event(payment)).content.decode()
    header = stripe.WebhookSignature.generate_signature_header(body, secret, int(time.time()))
    accepted = await client.post(
        "/api/payments/webhook",
        content=body,
        headers={SIGNATURE_HEADER: header, "Content-Type": "application/json"},
    )
    assert accepted.status_code == 200, accepted.text
    paid = (await client.get(f"/api/orders/{order['id']}", headers=customer)).json()
    assert paid["status"] == "paid"


async def test_the_sandbox_checkout_is_absent_for_an_unknown_payment(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get(f"/sandbox/checkout/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["status_code"] == 404


async def test_admin_payments_needs_an_admin(
    client: httpx.AsyncClient, customer: dict[str, str]
) -> None:
    assert (await client.get("/api/admin/payments", headers=customer)).status_code == 403

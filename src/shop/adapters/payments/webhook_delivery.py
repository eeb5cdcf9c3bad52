"""``HttpWebhookDelivery``: what a provider does to tell the shop — POST a signed event.

Signed at send time (a fresh ``t`` on every attempt, as Stripe does), so a retry after an
outage is not refused as stale. Any answer but 2xx raises, and SAQ retries the job with
backoff: a shop that was down receives the event later.
"""

from __future__ import annotations

import time

import httpx

from shop.domain.payments.signature import SIGNATURE_HEADER, sign

WEBHOOK_PATH = "/api/payments/webhook"


class WebhookRefused(RuntimeError):
    """The shop did not accept the event (non-2xx); the job retries."""


class HttpWebhookDelivery:
    def __init__(
        self,
        public_url: str,
        secret: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = public_url.rstrip("/") + WEBHOOK_PATH
        self._secret = secret
        self._transport = transport
        self._timeout = timeout

    async def deliver(self, body: str) -> int:
        raw = body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, raw, timestamp=int(time.time())),
        }
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout) as client:
            answer = await client.post(self.url, content=raw, headers=headers)
        if not answer.is_success:
            raise WebhookRefused(f"{self.url} answered {answer.status_code}: {answer.text[:200]}")
        return answer.status_code

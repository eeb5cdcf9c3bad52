"""Abuse protection in front of every route: who is counted, and under which quota.

- A request with a valid bearer token is counted per user (the loose quota).
- Anything else is counted per client address: strictly on sign-in and sign-up (routes with
  ``opt=SIGN_IN``, where guessing passwords pays; even with a token, so an account holder
  cannot guess other people's passwords under the loose quota), normally elsewhere. An
  address that keeps going after being refused is blocked (see ``Throttle``).
- Health probes and ``/metrics`` are never counted: a load balancer or a scraper must not
  get itself blocked.

The client address is the TCP peer, unless the peer is a configured trusted proxy: then
``X-Forwarded-For`` is read from the right, skipping trusted hops, and the first address that
is not ours is the client. Anything left of it was written by the client and is ignored, so a
forged header cannot buy a fresh quota. IPv6 clients are counted per /64, the block one
subscriber usually holds, or one machine could rotate through addresses forever.

If the counters cannot be reached the request goes through (logged): the throttle protects
the shop, it must not become the outage.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import limits
from litestar.enums import ScopeType

from shop.config import Settings
from shop.domain.errors import Unauthorized, Unavailable
from shop.domain.identity.model import Principal
from shop.domain.identity.throttle import BlockRule, Quota, Throttle
from shop.entrypoints.http.auth import authorization, bearer_token, remember_principal
from shop.logs import get_logger

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from shop.bootstrap import Container
    from shop.domain.identity.ports import AccessTokens

THROTTLE_OPT = "throttle"
SIGN_IN: dict[str, Any] = {THROTTLE_OPT: "sign_in"}
# Probes and the metrics scraper: a load balancer or Prometheus must not get itself blocked.
NEVER_THROTTLED = frozenset({"/health", "/ready", "/metrics"})
OUTAGE_LOG_INTERVAL = 10.0

_log = get_logger("shop.http.throttle")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TrustedProxies:
    def __init__(self, entries: Iterable[str]) -> None:
        self._networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in entries
        )

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trust(self, address: IPAddress) -> bool:
        return any(address in network for network in self._networks)


def _parse(address: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None


def _forwarded_for(scope: Scope) -> list[str]:
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            hops.extend(part.strip() for part in value.decode("latin-1").split(","))
    return hops


def client_address(scope: Scope, proxies: TrustedProxies) -> IPAddress | None:
    """The address that sent this request, as far as we can know it (None: unknown peer)."""
    client = scope.get("client")
    peer = _parse(client[0]) if client else None
    if peer is None or not proxies or not proxies.trust(peer):
        return peer
    hop = peer
    for candidate in reversed(_forwarded_for(scope)):
        address = _parse(candidate)
        if address is None:
            return hop  # a trusted proxy passed on garbage: the last address we can vouch for
        if not proxies.trust(address):
            return address
        hop = address
    return hop


def caller_key(address: IPAddress | None) -> str:
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def quota(name: str, notation: str, *, blockable: bool = False) -> Quota:
    item = limits.parse(notation)
    return Quota(name=name, amount=item.amount, window=item.get_expiry(), blockable=blockable)


class ThrottleMiddleware:
    """Route middleware (raw ASGI: a path set and the route's ``opt``, no per-request objects)."""

    def __init__(self, settings: Settings, tokens: AccessTokens) -> None:
        self._settings = settings
        self._tokens = tokens
        self._proxies = TrustedProxies(settings.trusted_proxies)
        self._throttle: Throttle | None = None
        self._last_outage_log = 0.0

    def __call__(self, app: ASGIApp) -> ASGIApp:
        async def throttled(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP and scope["path"] not in NEVER_THROTTLED:
                await self._admit(scope)
            await app(scope, receive, send)

        return throttled

    def _throttle_of(self, scope: Scope) -> Throttle:
        # The container (and so Redis) may only exist once the app's lifespan has started.
        if self._throttle is None:
            container: Container = scope["litestar_app"].state.container
            settings = self._settings
            self._throttle = Throttle(
                container.request_counter,
                anonymous=quota("anonymous", settings.rate_limit_anonymous, blockable=True),
                sign_in=quota("sign_in", settings.rate_limit_sign_in),
                user=quota("user", settings.rate_limit_user),
                block=BlockRule(
                    after_refusals=settings.rate_limit_block_after,
                    seconds=settings.rate_limit_block_seconds,
                ),
                batched=container.batched_request_counter,
            )
        return self._throttle

    def _principal(self, scope: Scope) -> Principal | None:
        header = authorization(scope)
        token = None if header is None else bearer_token(header)
        if token is None:
            return None
        try:
            principal = self._tokens.verify(token)
        except Unauthorized:
            return None
        remember_principal(scope, token, principal)
        return principal

    async def _admit(self, scope: Scope) -> None:
        throttle = self._throttle_of(scope)
        sign_in = scope["route_handler"].opt.get(THROTTLE_OPT) == "sign_in"
        principal = None if sign_in else self._principal(scope)
        try:
            if principal is not None:
                await throttle.admit_user(str(principal.user_id))
            else:
                key = caller_key(client_address(scope, self._proxies))
                await throttle.admit_anonymous(key, sign_in=sign_in)
        except Unavailable as exc:
            now = time.monotonic()
            if now - self._last_outage_log >= OUTAGE_LOG_INTERVAL:
                self._last_outage_log = now
                _log.warning("throttle skipped: counters unreachable", error=repr(exc.__cause__))

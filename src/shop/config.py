"""Settings: one immutable struct read from ``SHOP_*`` environment variables (and ``.env``).

Every field maps to ``SHOP_<FIELD>``. Values are validated at start-up so that a typo stops the
process with a message naming the variable, instead of surfacing later as a confusing failure
in the middle of a sale.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import limits
import msgspec
import pycountry
from dotenv import dotenv_values

ENV_PREFIX = "SHOP_"

Environment = Literal["dev", "test", "prod"]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the environment variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the shop can be told from outside. Defaults give the zero-setup run."""

    environment: Environment = "dev"
    # Connections. Unset means "start the embedded server under data_dir".
    database_url: str | None = None
    redis_url: str | None = None
    redlock_urls: tuple[str, ...] = ()
    data_dir: str = ".shop"
    # Overflow connections are opened for one checkout and closed on return (QueuePool), so
    # under sustained load each one pays a connect, asyncpg's type introspection and a fresh
    # prepare of every statement: a fixed pool that requests queue for is cheaper.
    database_pool_size: PositiveInt = 20
    database_max_overflow: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Stock.
    # The strategy of a fresh deployment; a running one is switched with `shop stock use`.
    # Any name registered in bootstrap.STOCK_STRATEGIES (checked in load_settings).
    stock_strategy: str = "counter"
    stock_sync_interval: Seconds = 5.0
    stock_sweep_interval: Seconds = 30.0
    # How long a purchase waits for a live switch or a counter recovery before a 503.
    stock_wait: Seconds = 2.0
    # After Redis lost the counters: how long orders reserved before the loss may still take
    # to be written (they cannot be seen until they are); see stock_counter_recovery.py.
    stock_recovery_grace: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    reservation_timeout: Seconds = 60.0
    redlock_lease: Seconds = 2.0
    redlock_wait: Seconds = 1.0
    redlock_retry_delay: Seconds = 0.005
    # Identity.
    jwt_secret: str | None = None
    access_token_ttl: Seconds = 900.0
    refresh_token_ttl: Seconds = 1_209_600.0
    admin_password: str | None = None
    password_hash_time_cost: PositiveInt = 3
    password_hash_memory_kib: Annotated[int, msgspec.Meta(ge=8192)] = 65_536
    # Orders.
    card_payment_ttl: Seconds = 900.0
    bank_transfer_ttl: Seconds = 259_200.0
    refund_window: Seconds = 259_200.0
    # At most the HTTP schema's caps (100 and 50), which the OpenAPI document declares.
    max_line_quantity: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    max_order_lines: Annotated[int, msgspec.Meta(ge=1, le=50)] = 50
    # Units of one option one customer may hold across live orders (unset: no limit).
    purchase_limit_per_option: PositiveInt | None = None
    # How often the worker expires unpaid orders past their pay_by (this is how they expire:
    # placing an order schedules nothing). Cron rounds it to whole seconds.
    order_expiry_interval: Seconds = 1.0
    # How often the worker sweeps for unfinished stock releases and unanswered refunds.
    order_sweep_interval: Seconds = 60.0
    # Payments. The gateway's webhook is signed with the secret (unset in the zero-setup run:
    # a local one is generated beside the embedded data; prod requires it). The sandbox
    # gateway refuses to run in prod unless explicitly allowed. public_url is where the
    # shop is reachable: checkout links and the sandbox's webhook deliveries point there.
    payment_gateway: str = "sandbox"
    payment_webhook_secret: str | None = None
    payment_sandbox_allowed: bool = False
    currency: str = "EUR"
    public_url: str = "http://127.0.0.1:8000"
    # A refund still pending this long after it was asked for is asked again (order sweep).
    refund_resend_after: Seconds = 900.0
    # Drops: how often the worker republishes waiting rooms Redis lost and refreshes the
    # units each drop has left (the backstop; reserves and releases update it at once).
    drop_room_refresh_interval: Seconds = 2.0
    # Catalog: popularity = units weight × units ordered (live orders) + wish weight × wishes
    # made within the window; recomputed every refresh interval; the top list keeps list size.
    popularity_units_weight: Annotated[int, msgspec.Meta(ge=0)] = 2
    popularity_wish_weight: Annotated[int, msgspec.Meta(ge=0)] = 1
    popularity_wish_window: Seconds = 604_800.0
    popularity_refresh_interval: Annotated[int, msgspec.Meta(ge=1)] = 300
    popular_list_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    # Wishes.
    max_wishes_per_user: PositiveInt = 1_000
    # HTTP.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    # Access tokens whose check is remembered per process (0: every request checks its token).
    access_token_cache: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 4096
    # The share of access lines written for requests that succeeded within the slow mark;
    # errors (status >= 400) and slow requests are always written.
    access_log_sample: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    access_log_slow_ms: PositiveInt = 500
    max_body_bytes: PositiveInt = 1_048_576
    # Abuse protection (limits notation: "10/minute", "100 per 5 seconds"). Anonymous callers
    # are counted per IP address, sign-in and sign-up more strictly; users per account.
    rate_limit_enabled: bool = True
    rate_limit_anonymous: str = "120/minute"
    rate_limit_sign_in: str = "10/minute"
    rate_limit_user: str = "600/minute"
    rate_limit_block_after: PositiveInt = 20
    rate_limit_block_seconds: PositiveInt = 900
    # Hits other than sign-in are counted in memory and sent to Redis in one round trip per
    # this many milliseconds (0: one round trip per request); see adapters/batched_counter.py.
    rate_limit_flush_ms: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 50
    trusted_proxies: tuple[str, ...] = ()
    # Observation. /metrics asks for "Authorization: Bearer <token>" when the token is set.
    metrics_token: str | None = None
    # How often the worker reads the ledger for the gauges and the dashboard, and how many
    # options (bought most recently) it follows.
    sale_snapshot_interval: Seconds = 1.0
    observed_options: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20
    # A worker in a container of its own serves its counters here (unset: it does not).
    worker_metrics_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


_FIELDS: dict[str, msgspec.structs.FieldInfo] = {
    f.name: f for f in msgspec.structs.fields(Settings)
}


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _parse_value(field: str, raw: str) -> Any:
    """Turn one raw string into the field's type; comma lists become tuples."""
    info = _FIELDS[field]
    if field in ("redlock_urls", "trusted_proxies"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    value: Any = raw.strip()
    if value == "" and msgspec.inspect.type_info(info.type).__class__ is msgspec.inspect.UnionType:
        return None
    return value


def load_settings(
    environ: Mapping[str, str] | None = None, *, env_file: Path | None = Path(".env")
) -> Settings:
    """Read settings from the environment (taking precedence) and an optional ``.env`` file.

    Raises ``ConfigError`` naming the first offending variable, or an unknown ``SHOP_*``
    variable (a misspelt name is as dangerous as a bad value: the default would silently win).
    """
    merged: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)

    raw: dict[str, Any] = {}
    for name, value in merged.items():
        if not name.startswith(ENV_PREFIX) or name.startswith("SHOP_TEST_"):
            continue
        field = name[len(ENV_PREFIX) :].lower()
        if field not in _FIELDS:
            known = ", ".join(sorted(env_name(f) for f in _FIELDS))
            raise ConfigError(f"{name} is not a setting of the shop (known: {known})")
        raw[field] = _parse_value(field, value)

    for field, value in raw.items():
        try:
            msgspec.convert({field: value}, Settings, strict=False)
        except msgspec.ValidationError as exc:
            reason = str(exc).split(" - at ")[0]
            raise ConfigError(f"{env_name(field)}={value!r} is invalid: {reason}") from None
    settings = msgspec.convert(raw, Settings, strict=False)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    _check_abuse_settings(settings)
    _check_stock_strategy(settings.stock_strategy)
    if settings.environment == "prod" and not settings.jwt_secret:
        raise ConfigError("SHOP_JWT_SECRET must be set when SHOP_ENVIRONMENT=prod")
    if settings.jwt_secret is not None and len(settings.jwt_secret) < 32:
        raise ConfigError("SHOP_JWT_SECRET is too short: use at least 32 characters")
    _check_payment_settings(settings)
    for url in settings.redlock_urls:
        if not url.startswith(("redis://", "rediss://")):
            raise ConfigError(f"SHOP_REDLOCK_URLS has {url!r}: every entry must be a redis:// URL")
    if settings.database_url is not None and not settings.database_url.startswith("postgresql"):
        raise ConfigError("SHOP_DATABASE_URL must be a postgresql:// URL")
    if settings.redis_url is not None and not settings.redis_url.startswith(
        ("redis://", "rediss://")
    ):
        raise ConfigError("SHOP_REDIS_URL must be a redis:// URL")


def _check_payment_settings(settings: Settings) -> None:
    from shop.bootstrap import PAYMENT_GATEWAYS  # the one list of gateways, as for stock

    if settings.payment_gateway not in PAYMENT_GATEWAYS:
        known = ", ".join(sorted(PAYMENT_GATEWAYS))
        raise ConfigError(
            f"SHOP_PAYMENT_GATEWAY={settings.payment_gateway!r} is invalid: known gateways "
            f"are {known}"
        )
    code = settings.currency
    if len(code) != 3 or not code.isupper() or pycountry.currencies.get(alpha_3=code) is None:
        raise ConfigError(
            f"SHOP_CURRENCY={settings.currency!r} is invalid: expected an ISO 4217 code "
            "in capitals, such as EUR or USD"
        )
    if settings.environment == "prod":
        if not settings.payment_webhook_secret:
            raise ConfigError("SHOP_PAYMENT_WEBHOOK_SECRET must be set when SHOP_ENVIRONMENT=prod")
        if settings.payment_gateway == "sandbox" and not settings.payment_sandbox_allowed:
            raise ConfigError(
                "SHOP_PAYMENT_GATEWAY=sandbox takes no real money: refused when "
                "SHOP_ENVIRONMENT=prod unless SHOP_PAYMENT_SANDBOX_ALLOWED=true"
            )
    secret = settings.payment_webhook_secret
    if secret is not None and len(secret) < 32:
        raise ConfigError("SHOP_PAYMENT_WEBHOOK_SECRET is too short: use at least 32 characters")
    if not settings.public_url.startswith(("http://", "https://")):
        raise ConfigError("SHOP_PUBLIC_URL must be an http:// or https:// URL")


def _check_stock_strategy(name: str) -> None:
    """The registry is the one list of strategies: a strategy registered there is a valid
    ``SHOP_STOCK_STRATEGY`` with no edit here. Imported at call time because ``bootstrap``
    imports this module."""
    from shop.bootstrap import STOCK_STRATEGIES

    if name not in STOCK_STRATEGIES:
        known = ", ".join(sorted(STOCK_STRATEGIES))
        raise ConfigError(f"SHOP_STOCK_STRATEGY={name!r} is invalid: known strategies are {known}")


def _check_abuse_settings(settings: Settings) -> None:
    for field in ("rate_limit_anonymous", "rate_limit_sign_in", "rate_limit_user"):
        notation = getattr(settings, field)
        try:
            parsed = limits.parse_many(notation)
        except ValueError:
            parsed = []
        if len(parsed) != 1:
            raise ConfigError(
                f"{env_name(field)}={notation!r} is invalid: "
                "expected one limit such as '10/minute' or '100 per 5 seconds'"
            )
    for entry in settings.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"SHOP_TRUSTED_PROXIES has {entry!r}: every entry must be an IP address or "
                "a network such as 10.0.0.0/8"
            ) from None

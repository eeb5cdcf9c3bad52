from pathlib import Path

import pytest

from shop.config import ConfigError, load_settings
from tests.strategies.ledger_twin import NAME as LEDGER_TWIN


def test_defaults_give_the_zero_setup_run() -> None:
    settings = load_settings({}, env_file=None)
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.card_payment_ttl == 900
    assert settings.bank_transfer_ttl == 259_200
    assert settings.refund_window == 259_200
    assert settings.stock_strategy == "counter"
    assert settings.stock_recovery_grace == 10


def test_values_are_parsed_from_strings() -> None:
    settings = load_settings(
        {
            "SHOP_DATABASE_URL": "postgresql://u@h/db",
            "SHOP_REDIS_URL": "redis://h:1/2",
            "SHOP_REDLOCK_URLS": "redis://a:1, redis://b:2,redis://c:3",
            "SHOP_CARD_PAYMENT_TTL": "5",
            "SHOP_STOCK_STRATEGY": "redlock",
            "SHOP_LOG_JSON": "true",
        },
        env_file=None,
    )
    assert settings.redlock_urls == ("redis://a:1", "redis://b:2", "redis://c:3")
    assert settings.card_payment_ttl == 5.0
    assert settings.stock_strategy == "redlock"
    assert settings.log_json is True
    assert settings.database_url is not None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SHOP_STOCK_STRATEGY", "optimistic"),
        ("SHOP_CARD_PAYMENT_TTL", "-1"),
        ("SHOP_CARD_PAYMENT_TTL", "soon"),
        ("SHOP_DATABASE_POOL_SIZE", "0"),
        ("SHOP_LOG_JSON", "maybe"),
        ("SHOP_DATABASE_URL", "mysql://root@localhost/shop"),
        ("SHOP_REDIS_URL", "localhost:6379"),
        ("SHOP_REDLOCK_URLS", "redis://a:1,localhost:2"),
        ("SHOP_JWT_SECRET", "short"),
        ("SHOP_STOCK_WAIT", "0"),
        ("SHOP_STOCK_RECOVERY_GRACE", "-1"),
    ],
)
def test_an_invalid_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value}, env_file=None)


def test_a_misspelt_variable_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ConfigError, match="SHOP_STOCK_STRATGY"):
        load_settings({"SHOP_STOCK_STRATGY": "db"}, env_file=None)


def test_production_requires_a_jwt_secret() -> None:
    with pytest.raises(ConfigError, match="SHOP_JWT_SECRET"):
        load_settings({"SHOP_ENVIRONMENT": "prod"}, env_file=None)


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SHOP_STOCK_STRATEGY=db\nSHOP_CARD_PAYMENT_TTL=30\n")
    settings = load_settings({"SHOP_CARD_PAYMENT_TTL": "60"}, env_file=env_file)
    assert settings.stock_strategy == "db"
    assert settings.card_payment_ttl == 60


def test_test_harness_variables_are_not_settings() -> None:
    settings = load_settings({"SHOP_TEST_DATABASE_URL": "postgresql://x/y"}, env_file=None)
    assert settings.database_url is None


def test_a_strategy_registered_in_bootstrap_is_a_valid_setting_without_editing_config() -> None:
    """The test-only ``ledger-twin`` is registered by one line in tests/conftest.py only."""
    settings = load_settings({"SHOP_STOCK_STRATEGY": LEDGER_TWIN}, env_file=None)
    assert settings.stock_strategy == LEDGER_TWIN

"""Reading a ``/metrics`` body in tests: samples by name and labels, and the families the
issue asks an operator to see (names as prometheus-client's parser gives them: counters
without their ``_total``)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]

FAMILIES = {
    "shop_http_request_duration_seconds",
    "shop_purchases",
    "shop_reservation_sweeps",
    "shop_reservations_swept",
    "shop_orders_expired",
    "shop_payment_events",
    "shop_dependency_errors",
    "shop_stock_syncs",
    "shop_stock_sync_last_success_timestamp_seconds",
    "shop_stock_sync_lag_seconds",
    "shop_sale_snapshot_age_seconds",
    "shop_stock_on_sale_units",
    "shop_stock_sold_units",
    "shop_stock_held_units",
    "shop_stock_left_units",
    "shop_stock_drift_units",
    "shop_stock_oversold_units",
}
DROP_FAMILIES = {
    "shop_drop_queue_length",
    "shop_drop_admitted",
    "shop_drop_admission_rate",
    "shop_drop_starts_at_timestamp_seconds",
}


def samples(text: str) -> dict[tuple[str, Labels], float]:
    found: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def of(text: str, name: str) -> dict[Labels, float]:
    """Every sample called ``name``, by its labels."""
    return {labels: v for (sample, labels), v in samples(text).items() if sample == name}


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}

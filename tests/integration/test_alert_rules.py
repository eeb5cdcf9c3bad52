"""deploy/prometheus/alerts.yml parses, and alerts only on metrics the shop exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from shop.adapters.metrics.prometheus import PrometheusExposition, PrometheusObserver
from shop.domain.observation.model import OptionFigures, PurchaseOutcome, SaleSnapshot

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
REQUIRED = {"ShopStockDrift", "ShopStockOversold", "ShopPurchaseErrorRate"}


def _rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    assert isinstance(document, dict) and isinstance(document.get("groups"), list)
    rules: list[dict[str, object]] = []
    for group in document["groups"]:
        assert isinstance(group["name"], str) and group["name"]
        assert isinstance(group["rules"], list) and group["rules"]
        rules.extend(group["rules"])
    return rules


def test_the_rule_file_has_the_required_alerts_in_prometheus_form() -> None:
    rules = _rules()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["alert"], str) and re.fullmatch(r"[A-Za-z_]\w*", rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", str(rule["for"])), rule["for"]
    assert {str(rule["alert"]) for rule in rules} >= REQUIRED


def test_every_metric_an_alert_reads_is_exported() -> None:
    observer = PrometheusObserver(lambda: "db")
    observer.purchase(PurchaseOutcome.CREATED)
    observer.stock_synced(1, 0.0)
    snapshot = SaleSnapshot(1.0, "db", (OptionFigures(1, 1, 0, 0, 1, 0, 0),))
    observer.sale_observed(snapshot)
    text = PrometheusExposition().render(snapshot).decode()
    exported = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    for rule in _rules():
        for name in re.findall(r"\bshop_[a-z_]+\b", str(rule["expr"])):
            assert name in exported, (rule["alert"], name)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

"""The monitoring files under deploy/: Prometheus scrapes the five services, and the Grafana
dashboard asks only for metrics the services expose, in PromQL that parses (the promtool
checks are skipped where promtool is not installed)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.test_analytics_metrics import exposition

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana" / "deskstream.json"
PROMTOOL = shutil.which("promtool")


def expressions() -> list[str]:
    dashboard = json.loads(GRAFANA.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_prometheus_scrapes_the_five_services():
    targets = re.findall(r'"127\.0\.0\.1:(\d+)"', PROMETHEUS.read_text())
    assert sorted(targets) == ["8001", "8002", "8003", "8004", "8005"]
    assert "metrics_path: /metrics" in PROMETHEUS.read_text()


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_accepts_the_scrape_configuration():
    checked = subprocess.run([PROMTOOL, "check", "config", str(PROMETHEUS)], capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_the_dashboard_asks_only_for_metrics_that_exist():
    exposed = {s.name for f in text_string_to_metric_families((await exposition()).decode()) for s in f.samples}
    exposed.add("deskstream_service_ready")  # every service's, from shared/telemetry.py
    asked = {name for expr in expressions() for name in re.findall(r"\b(deskstream_[a-z_]+)", expr)}
    assert asked and asked <= exposed, asked - exposed


def test_every_panel_has_a_query_and_a_place():
    dashboard = json.loads(GRAFANA.read_text())
    assert dashboard["uid"] and dashboard["title"]
    for panel in dashboard["panels"]:
        assert panel["targets"] and panel["gridPos"]["w"] > 0, panel["title"]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: prometheus)")
def test_every_dashboard_query_is_valid_promql(tmp_path):
    # promtool parses expressions in rule files: each query becomes a recording rule
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(expressions())]}]}
    path = tmp_path / "rules.json"  # JSON is YAML
    path.write_text(json.dumps(rules))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr

"""Alert rules and the Grafana dashboard: valid for Prometheus, and about metrics the code exports.

The metrics come from the code's own Prometheus registry (``core.metrics``, which the
worker and the TF Serving clients fill), so a renamed metric breaks this test rather than a
dashboard in production.
"""

from __future__ import annotations

import json
import re
import subprocess

import prometheus_client
import promql_parser
import pytest
import yaml

from tests.infra.conftest import K8S, ROOT

MONITORING = K8S / "base" / "monitoring"
RULES = MONITORING / "rules" / "imgtag.rules.yaml"
RULE_TESTS = MONITORING / "rules" / "imgtag.rules.test.yaml"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
RUNBOOK = K8S / "RUNBOOK.md"
#: Series Prometheus makes itself for every scrape target, not exported by any code.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
#: Grafana's range variables, replaced by a duration before parsing.
GRAFANA_RANGES = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported_series() -> set[str]:
    """Every series name the imgtag processes expose on ``/metrics``."""
    import core.metrics  # noqa: F401  (registers the worker's metrics)
    import serving.predictors  # noqa: F401  (the TF Serving clients count into core.metrics)

    names = set()
    for family in prometheus_client.REGISTRY.collect():
        base = family.name
        names.update(base + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def selectors(node) -> set[str]:
    """Metric names of every vector selector in a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        name = node.name or next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
        return {name} if name else set()
    if isinstance(node, promql_parser.MatrixSelector):
        return selectors(node.vector_selector)
    found = set()
    for attribute in ("lhs", "rhs", "expr", "param"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, (int, float, str)):
            found |= selectors(child)
    for child in getattr(node, "args", None) or []:
        found |= selectors(child)
    return found


def metrics_in(expression: str) -> set[str]:
    return selectors(promql_parser.parse(GRAFANA_RANGES.sub("5m", expression)))


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """``(where, PromQL)`` of every panel target and every query variable of a dashboard."""
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))  # rows hold panels

    for panel in panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((f"panel {panel.get('title')!r}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and query:
            match = re.fullmatch(r"\s*label_values\((.+),\s*\w+\s*\)\s*", query)
            found.append((f"variable {variable['name']!r}", match.group(1) if match else query))
    return found


def test_the_rules_pass_promtool(promtool):
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say(promtool):
    done = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, cwd=RULE_TESTS.parent
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", RULE_TESTS.read_text()))
    alerts = {rule["alert"] for group in rule_groups() for rule in group["rules"] if "alert" in rule}
    assert alerts <= tested, f"alerts without a promtool unit test: {sorted(alerts - tested)}"


def test_the_issue_asks_for_these_alerts():
    alerts = [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]
    used = set().union(*(metrics_in(rule["expr"]) for rule in alerts))
    # queue backing up, dead letters rising, tagging latency, serving down
    assert {
        "imgtag_queue_depth",
        "imgtag_tagging_failures_total",
        "imgtag_tag_latency_seconds_bucket",
        "imgtag_serving_requests_total",
    } <= used, sorted(used)
    assert "up" in used, "no alert watches the scrape targets (serving or worker down)"


def test_the_prometheus_rule_carries_the_rules_file():
    (rule,) = [
        doc
        for path in MONITORING.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "PrometheusRule"
    ]
    assert rule["spec"]["groups"] == rule_groups(), (
        "the PrometheusRule and rules/imgtag.rules.yaml differ: edit the rules file and regenerate"
    )


def test_every_alert_explains_itself_and_links_its_runbook_section():
    runbook = RUNBOOK.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+\s+(.+)$", runbook, re.MULTILINE)
    }
    for group in rule_groups():
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
            anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
            assert anchor in anchors, f"{name}: the runbook has no section #{anchor}"


def test_rules_and_dashboards_use_only_metrics_the_code_exports():
    exported = exported_series() | PROMETHEUS_SERIES
    uses = [
        (f"{RULES.name}: {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rule_groups()
        for rule in group["rules"]
    ]
    recorded = {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}
    assert DASHBOARDS, f"no Grafana dashboard under {MONITORING.relative_to(ROOT)}/dashboards"
    for path in DASHBOARDS:
        uses += [
            (f"{path.name}: {where}", expr)
            for where, expr in dashboard_expressions(json.loads(path.read_text()))
        ]
    assert len(uses) >= 10
    unknown = {
        f"{where}: {name}"
        for where, expression in uses
        for name in metrics_in(expression)
        if name not in exported | recorded
    }
    assert not unknown, f"metrics no imgtag code exports: {sorted(unknown)}"


def test_the_metric_check_catches_a_typo():
    exported = exported_series()
    assert "imgtag_queue_depth" in exported and "imgtag_batch_seconds_bucket" in exported
    assert metrics_in('sum(rate(imgtag_images_taged_total{job="w"}[$__rate_interval]))') - exported == {
        "imgtag_images_taged_total"
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_is_importable_grafana_json(path):
    dashboard = json.loads(path.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 39
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel.get("type") != "row":
            assert panel.get("gridPos") and panel.get("targets"), panel.get("title")

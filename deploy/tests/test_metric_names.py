"""Every metric name used by the alert rules, the Grafana dashboard and the dashboard
crate exists: server names (DESIGN §2.6) in a running strata-server's /metrics output,
operator names (strata_operator_*) in the operator's source.
"""

from __future__ import annotations

import json
import re

import pytest
import requests
import yaml

import strata_pkg as p

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{|\s)")


def exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if m:
                names.add(m.group(1))
    return names


def rule_names() -> set[str]:
    doc = yaml.safe_load(p.RULES.read_text())
    return {n for g in doc["groups"] for r in g["rules"] for n in p.metric_names(r["expr"])}


def grafana_names() -> set[str]:
    dash = json.loads(p.GRAFANA.read_text())
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "query", "definition") and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dash)
    assert exprs, "no PromQL found in the Grafana dashboard"
    return {n for e in exprs for n in p.metric_names(e)}


def dashboard_crate_names() -> set[str]:
    """strata_* names in string literals and templates of the dashboard crate."""
    names = set()
    roots = [p.ROOT / "dashboard" / "src", p.ROOT / "dashboard" / "templates"]
    for root in roots:
        if not root.exists():
            continue
        for f in root.rglob("*"):
            if not f.is_file():
                continue
            text = f.read_text(errors="replace")
            if f.suffix == ".rs":
                # only inside string literals: crate paths like strata_server::… are code
                text = " ".join(re.findall(r'"(?:[^"\\]|\\.)*"', text))
            names |= p.metric_names(text)
    # The dashboard's own metrics are defined by the dashboard, not the server.
    return {n for n in names if not n.startswith("strata_dashboard_") and n != "strata_dashboard"}


def server_side(names: set[str]) -> set[str]:
    return {n for n in names if not n.startswith("strata_operator")}


def operator_side(names: set[str]) -> set[str]:
    return {n for n in names if n.startswith("strata_operator_")}


@pytest.fixture
def server_metric_names(strata_server) -> set[str]:
    # Series of labelled metrics appear once used: touch every route kind first.
    for path in ("/v1/objects/drill/_/missing", "/health"):
        requests.get(strata_server.url + path, timeout=10)
    requests.put(strata_server.url + "/v1/objects/drill/_/k", data=b"x", timeout=10)
    strata_server.panic(1)
    return exported_names(strata_server.metrics())


def test_rule_metric_names_exist(server_metric_names):
    used = server_side(rule_names())
    assert used, "no strata_* metric names found in the rules"
    assert used - server_metric_names == set()


def test_grafana_metric_names_exist(server_metric_names):
    used = server_side(grafana_names())
    assert used
    assert used - server_metric_names == set()


def test_dashboard_metric_names_exist(server_metric_names):
    used = server_side(dashboard_crate_names())
    assert used, "no strata_* metric names found in dashboard/src or dashboard/templates"
    assert used - server_metric_names == set()


def operator_rendered_rule_names() -> set[str]:
    """Server metric names in the PrometheusRule the operator renders per StorageService."""
    f = p.ROOT / "operator" / "src" / "render" / "prometheus_rule.rs"
    if not f.exists():
        return set()
    literals = " ".join(re.findall(r'"(?:[^"\\]|\\.)*"', f.read_text()))
    return server_side(p.metric_names(literals))


def test_operator_rendered_rule_metric_names_exist(server_metric_names):
    used = operator_rendered_rule_names()
    if not used:
        pytest.skip("the operator renders no PrometheusRule")
    assert used - server_metric_names == set()


def test_contract_names_are_exported(server_metric_names):
    """The DESIGN §2.6 table, as the Grafana dashboard and the rules assume it."""
    contract = {
        "strata_service_tasks_running", "strata_service_tasks_queued", "strata_service_tasks_limit",
        "strata_service_operations_total", "strata_service_operation_duration_seconds_bucket",
        "strata_service_rejections_total", "strata_service_panics_total",
        "strata_http_requests_in_flight", "strata_http_requests_limit",
        "strata_http_rejections_total", "strata_http_requests_total",
        "strata_http_request_duration_seconds_bucket", "strata_bytes_total", "strata_build_info",
    }
    assert contract - server_metric_names == set()


def operator_source_names() -> set[str]:
    names = set()
    for f in (p.ROOT / "operator" / "src").rglob("*.rs"):
        literals = " ".join(re.findall(r'"(?:[^"\\]|\\.)*"', f.read_text()))
        names |= {n for n in p.metric_names(literals) if n.startswith("strata_operator_")}
    return names


def test_operator_metric_names_exist():
    used = operator_side(rule_names() | grafana_names() | dashboard_crate_names())
    if not used:
        pytest.skip("no strata_operator_* names used")
    defined = operator_source_names()
    # histograms and counters are used with their series suffixes
    expanded = defined | {d + s for d in defined for s in ("_bucket", "_sum", "_count")}
    assert used - expanded == set(), f"operator metrics used but not defined in operator/src: {used - expanded}"

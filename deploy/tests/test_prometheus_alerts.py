"""A real Prometheus scrapes a real strata-server with fault injection and evaluates the
shipped alert rules: injected panics must bring StrataServerPanics to `firing`.

Scrape and evaluation intervals are 1s. The rules are loaded unchanged (the panic alert
has no `for:`), so this also proves the expressions work on real server output.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests
import yaml

from conftest import free_port
import strata_pkg as p

FIRING_TIMEOUT = 60


class Prometheus:
    def __init__(self, tmp, target: str, rules_file):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules_file)],
            "scrape_configs": [{
                "job_name": "drill",
                "static_configs": [{"targets": [target], "labels": {"namespace": "strata-drill"}}],
            }],
        }))
        self.log = tmp / "prometheus.log"
        self.proc = subprocess.Popen(
            [p.tool("prometheus"),
             f"--config.file={config}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.tsdb.path={tmp / 'tsdb'}",
             "--storage.tsdb.retention.time=1h"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"prometheus not ready in 30s:\n{self.log.read_text()}")

    def api(self, path: str, **params):
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; alerts: {self.alerts()}")

    def stop(self):
        p.stop_process(self.proc)


@pytest.fixture
def prometheus_for(tmp_path):
    started = []

    def start(target: str) -> Prometheus:
        rules = tmp_path / "strata-rules.yaml"
        shutil.copy(p.RULES, rules)
        prom = Prometheus(tmp_path, target, rules)
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


def panic_alerts(prom: Prometheus, state: str) -> list[dict]:
    return [a for a in prom.alerts() if a["labels"].get("alertname") == "StrataServerPanics"
            and a["state"] == state]


def test_injected_panics_fire_the_panic_alert(strata_server, prometheus_for):
    prom = prometheus_for(strata_server.hostport)

    # The rules loaded, and the target is scraped with the panic counter at zero.
    groups = prom.api("rules")["groups"]
    assert {r["name"] for g in groups for r in g["rules"]} >= {"StrataServerPanics"}
    prom.wait_for(
        lambda: prom.api("query", query='strata_service_panics_total{operation="get"}')["result"],
        30, "the first scrape of strata_service_panics_total")
    # a few more scrapes at zero, so that increase() sees the jump
    time.sleep(3)
    assert panic_alerts(prom, "firing") == [], "panic alert fired before any panic"

    strata_server.panic(3)

    firing = prom.wait_for(lambda: panic_alerts(prom, "firing"), FIRING_TIMEOUT,
                           "StrataServerPanics to fire")
    alert = firing[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["operation"] == "get"
    assert alert["labels"]["job"] == "drill"
    assert alert["labels"]["namespace"] == "strata-drill"
    assert alert["labels"]["instance"] == strata_server.hostport
    assert "panicked during get" in alert["annotations"]["summary"]
    assert alert["annotations"]["runbook_url"].endswith("#strataserverpanics")

    # No other alert fires on a healthy server that only had a few panics. (The 5xx
    # ratio needs 0.1 req/s sustained for 5 minutes, far beyond this test.)
    others = [a["labels"]["alertname"] for a in prom.alerts()
              if a["state"] == "firing" and a["labels"]["alertname"] != "StrataServerPanics"]
    assert others == []


def test_panics_before_the_first_scrape_fire_too(strata_server, prometheus_for):
    """A new pod that panicked before Prometheus ever scraped it (no zero sample for
    increase()) still pages: the rule's young-process branch, on real server output."""
    strata_server.panic(2)
    prom = prometheus_for(strata_server.hostport)
    firing = prom.wait_for(lambda: panic_alerts(prom, "firing"), FIRING_TIMEOUT,
                           "StrataServerPanics to fire for panics before the first scrape")
    assert firing[0]["labels"]["operation"] == "get"


def test_stopped_server_is_reported_down(strata_server, prometheus_for):
    """`up == 0` for a former Strata target is what StrataServerDown keys on."""
    prom = prometheus_for(strata_server.hostport)
    prom.wait_for(lambda: prom.api("query", query="strata_build_info")["result"], 30,
                  "strata_build_info to be scraped")
    expr = "up == 0 and on (job, instance) max_over_time(strata_build_info[1h])"
    assert prom.api("query", query=expr)["result"] == []
    strata_server.stop()
    result = prom.wait_for(lambda: prom.api("query", query=expr)["result"], 30,
                           "the stopped server to be down")
    assert result[0]["metric"]["instance"] == strata_server.hostport
    # StrataServerDown waits 5 minutes (`for: 5m`) before firing: pending is enough here.
    prom.wait_for(
        lambda: [a for a in prom.alerts() if a["labels"]["alertname"] == "StrataServerDown"
                 and a["state"] in ("pending", "firing")],
        30, "StrataServerDown to be pending")


def grafana_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Grafana target and variable query."""
    import json

    dash = json.loads(p.GRAFANA.read_text())
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            out.append((panel["title"], t["expr"]))
    for var in dash["templating"]["list"]:
        q = var.get("query")
        if isinstance(q, dict):
            out.append((f"variable {var['name']}", q["query"]))
    return out


def concrete(expr: str) -> str:
    """Grafana variables -> values Prometheus understands (all selected, 1m windows)."""
    for var in ("$namespace", "$job", "$instance"):
        expr = expr.replace(var, ".*")
    return expr.replace("$__rate_interval", "1m")


def test_grafana_queries_run_on_real_prometheus(strata_server, prometheus_for):
    """Every dashboard query is valid PromQL for Prometheus, and the panels the on-call
    engineer looks at first have data for a live server."""
    import re

    prom = prometheus_for(strata_server.hostport)
    prom.wait_for(lambda: prom.api("query", query="strata_build_info")["result"], 30,
                  "strata_build_info to be scraped")
    strata_server.panic(2)
    time.sleep(3)
    must_have_data = {"Servers up", "Web tier: requests in flight vs limit",
                      "Service tier: tasks running / queued vs limit", "Panics (last 1h)"}
    for title, expr in grafana_queries():
        m = re.match(r"label_values\((?:(.+), )?(\w+)\)$", expr)
        if m:  # Grafana's variable function: check the selector and that the label exists
            selector, label = m.group(1), m.group(2)
            prom.api("series", **{"match[]": concrete(selector)})
            continue
        result = prom.api("query", query=concrete(expr))["result"]
        if title in must_have_data:
            assert result, f"panel {title!r} has no data: {expr}"

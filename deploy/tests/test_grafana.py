"""The Grafana dashboard has the panels the issue asks for, built the way Grafana
imports them (unique ids, templated data source, no overlapping panels)."""

from __future__ import annotations

import json

import strata_pkg as p

DASH = json.loads(p.GRAFANA.read_text())
PANELS = [x for x in DASH["panels"] if x["type"] != "row"]


def exprs(panel) -> str:
    return " ".join(t["expr"] for t in panel.get("targets", []))


def find(*metrics: str):
    return [x for x in PANELS if all(m in exprs(x) for m in metrics)]


def test_required_panels():
    assert find("strata_http_requests_in_flight", "strata_http_requests_limit"), "in-flight vs limit"
    rejections = find("strata_service_rejections_total")
    assert any("by (reason)" in exprs(x) for x in rejections), "rejections by reason"
    panics = find("strata_service_panics_total")
    assert any("by (operation)" in exprs(x) for x in panics), "panics by operation"
    heatmaps = [x for x in PANELS if x["type"] == "heatmap"]
    assert heatmaps and all(t.get("format") == "heatmap" for x in heatmaps for t in x["targets"])
    assert "_bucket" in exprs(heatmaps[0]) and "by (le)" in exprs(heatmaps[0])
    bytes_panels = find("strata_bytes_total")
    assert any("by (direction)" in exprs(x) for x in bytes_panels), "bytes in/out"


def test_ids_unique_and_datasource_templated():
    ids = [x["id"] for x in DASH["panels"]]
    assert len(ids) == len(set(ids))
    assert DASH["uid"] and DASH["title"]
    for x in PANELS:
        assert x["datasource"]["uid"] == "${datasource}", x["title"]
        for t in x["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
    names = [v["name"] for v in DASH["templating"]["list"]]
    assert names[0] == "datasource"


def test_panels_do_not_overlap():
    cells = set()
    for x in DASH["panels"]:
        g = x["gridPos"]
        assert g["x"] + g["w"] <= 24, x["title"]
        for dx in range(g["w"]):
            for dy in range(g["h"]):
                cell = (g["x"] + dx, g["y"] + dy)
                assert cell not in cells, f"{x['title']} overlaps another panel"
                cells.add(cell)


def test_server_panels_use_the_template_variables():
    for x in PANELS:
        for t in x["targets"]:
            if "strata_operator_" in t["expr"]:
                continue
            assert 'job=~"$job"' in t["expr"], f"{x['title']}: not filtered by $job"

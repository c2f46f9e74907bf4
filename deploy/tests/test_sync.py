"""Copies never drift: the kustomize base renders the same objects as the chart's
default install, the monitoring overlay the chart's monitoring objects, and the chart
ships the same rules and Grafana JSON as deploy/."""

from __future__ import annotations

import sys

import strata_pkg as p
import sync


def test_generated_files_are_up_to_date(capsys):
    # run as the CLI would, in check mode
    argv = sys.argv
    sys.argv = ["sync.py", "--check"]
    try:
        code = sync.main()
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    assert code == 0, f"run `python3 deploy/tests/sync.py`:\n{out}"


def normalized(objs):
    return {p.key(o): p.strip_helm_labels(o) for o in objs}


def test_kustomize_base_equals_chart_default_install():
    chart = normalized(p.helm_template(include_crds=True))
    base = normalized(o for o in p.kustomize(p.BASE) if o["kind"] != "Namespace")
    assert set(base) == set(chart)
    for k in chart:
        assert base[k] == chart[k], f"{k} differs between deploy/base and the chart"


def test_kustomize_base_creates_restricted_namespace():
    ns = [o for o in p.kustomize(p.BASE) if o["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in ns] == [p.NAMESPACE]
    assert ns[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_monitoring_overlay_equals_chart_monitoring():
    chart = normalized(o for o in p.helm_template(set_values=sync.MONITORING_SET)
                       if o["kind"] in sync.MONITORING_KINDS or o["kind"] == "ConfigMap")
    overlay = normalized(o for o in p.kustomize(p.MONITORING_OVERLAY)
                         if o["kind"] in sync.MONITORING_KINDS or o["kind"] == "ConfigMap")
    assert overlay == chart

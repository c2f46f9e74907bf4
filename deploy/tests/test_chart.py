"""The Helm chart: lints, values schema strictness, what it renders (operator HA with
leader election, restricted pod security, least-privilege RBAC, optional objects)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

import strata_pkg as p

VALUE_SETS = {
    "default": (),
    "all-features": (p.ALL_FEATURES_VALUES,),
}


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request) -> list[dict]:
    return p.helm_template(*VALUE_SETS[request.param], include_crds=True)


@pytest.fixture(scope="module")
def default_render() -> list[dict]:
    return p.helm_template()


@pytest.fixture(scope="module")
def all_render() -> list[dict]:
    return p.helm_template(p.ALL_FEATURES_VALUES)


def helm_fails(*set_values: str) -> str:
    args = [p.tool("helm"), "template", "x", str(p.CHART)]
    for s in set_values:
        args += ["--set", s]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode != 0, f"helm accepted {set_values}"
    return proc.stderr


@pytest.mark.parametrize("values", list(VALUE_SETS))
def test_helm_lint_strict(values):
    args = [p.tool("helm"), "lint", "--strict", str(p.CHART)]
    for f in VALUE_SETS[values]:
        args += ["-f", str(f)]
    p.run(args)


@pytest.mark.parametrize("bad, message", [
    (("operator.replicaz=2",), "replicaz"),
    (("dashboard.service.type=Bogus",), "dashboard/service/type"),
    (("operator.replicas=two",), "operator/replicas"),
    (("operator.image.pullPolicy=Sometimes",), "pullPolicy"),
    (("monitoring.serviceMonitor.interval=soon",), "interval"),
    (("operator.leaderElection.enabled=false",), "leaderElection/enabled"),
    (("topLevelTypo=1",), "topLevelTypo"),
])
def test_values_schema_rejects(bad, message):
    assert message in helm_fails(*bad)


def test_single_operator_may_run_without_leader_election():
    objs = p.helm_template(set_values=("operator.replicas=1", "operator.leaderElection.enabled=false"))
    assert not [o for o in objs if o["kind"] == "Role"]
    dep = [o for o in p.by_kind(objs, "Deployment") if o["metadata"]["name"] == "strata-operator"][0]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--no-leader-election" in args
    assert not any(a.startswith("--lease-name") for a in args)


def test_operator_runs_two_replicas_with_leader_election(default_render):
    dep = [o for o in p.by_kind(default_render, "Deployment") if o["metadata"]["name"] == "strata-operator"][0]
    assert dep["spec"]["replicas"] == 2
    container = dep["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "run"
    assert "--lease-name=strata-operator" in args
    assert "--no-leader-election" not in args
    # Lease namespace and holder identity come from the downward API
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAMESPACE"] == "metadata.namespace"
    assert env["POD_NAME"] == "metadata.name"
    # a rollout never takes the standby away before the new pod is ready
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = p.by_kind(default_render, "PodDisruptionBudget")
    assert [x["spec"]["minAvailable"] for x in pdb] == [1]
    role = [o for o in p.by_kind(default_render, "Role")][0]
    assert role["metadata"]["namespace"] == p.NAMESPACE
    assert [r["resources"] for r in role["rules"]] == [["leases"]]


def test_default_install_objects(default_render):
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in default_render)
    assert kinds == sorted([
        "ClusterRole/strata-dashboard", "ClusterRole/strata-operator",
        "ClusterRoleBinding/strata-dashboard", "ClusterRoleBinding/strata-operator",
        "Deployment/strata-dashboard", "Deployment/strata-operator",
        "PodDisruptionBudget/strata-operator",
        "Role/strata-operator-leader-election", "RoleBinding/strata-operator-leader-election",
        "Service/strata-dashboard", "Service/strata-operator",
        "ServiceAccount/strata-dashboard", "ServiceAccount/strata-operator",
    ])


def test_crd_is_installed_from_crds_dir(rendered):
    crds = p.by_kind(rendered, "CustomResourceDefinition")
    assert [c["metadata"]["name"] for c in crds] == ["storageservices.strata.dev"]


def test_all_features_render_optional_objects(all_render):
    kinds = {o["kind"] for o in all_render}
    assert {"Ingress", "ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"} <= kinds
    ing = p.by_kind(all_render, "Ingress")[0]
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "strata-dashboard"
    # dashboard.namespace: read access in that namespace only
    bindings = p.by_kind(all_render, "RoleBinding")
    assert ("storage-a", "strata-dashboard") in {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings}
    assert [b["metadata"]["name"] for b in p.by_kind(all_render, "ClusterRoleBinding")] == ["strata-operator"]


def test_images_default_to_app_version(default_render):
    chart = yaml.safe_load((p.CHART / "Chart.yaml").read_text())
    images = {c["image"] for _, spec in p.pod_specs(default_render) for c in spec["containers"]}
    assert images == {f"ghcr.io/strata-dev/strata-operator:{chart['appVersion']}",
                      f"ghcr.io/strata-dev/strata-dashboard:{chart['appVersion']}"}


def test_digest_wins_over_tag(all_render):
    images = {c["image"] for _, spec in p.pod_specs(all_render) for c in spec["containers"]}
    assert any("@sha256:" in i for i in images)


def test_dashboard_can_be_disabled():
    objs = p.helm_template(set_values=("dashboard.enabled=false",))
    assert not [o for o in objs if "dashboard" in o["metadata"]["name"]]


# ------------------------------------------------------------------ pod security

def test_pods_meet_restricted_pod_security(rendered):
    """The checks of the Pod Security Standard "restricted" profile."""
    specs = list(p.pod_specs(rendered))
    assert specs
    for obj, spec in specs:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        psc = spec.get("securityContext", {})
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(flag), where
        for vol in spec.get("volumes", []):
            assert "hostPath" not in vol, where
        assert psc.get("runAsNonRoot") is True, where
        assert psc.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), where
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            cw = f"{where} container {c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, cw
            assert not sc.get("privileged"), cw
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], cw
            assert not set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}, cw
            assert sc.get("readOnlyRootFilesystem") is True, cw
            assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, cw
            assert "ports" not in c or all("hostPort" not in port for port in c["ports"]), cw
            assert c.get("resources", {}).get("requests"), f"{cw}: no resource requests"
            assert c.get("livenessProbe") and c.get("readinessProbe"), f"{cw}: probes missing"


# ------------------------------------------------------------------------- RBAC

def rules_of(objs, kind, name):
    return [o for o in p.by_kind(objs, kind) if o["metadata"]["name"] == name][0]["rules"]


def test_rbac_has_no_wildcards_and_secrets_are_only_read_by_name(rendered):
    for role in p.by_kind(rendered, "ClusterRole") + p.by_kind(rendered, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), role["metadata"]["name"]
            if "secrets" in rule["resources"]:
                # Only the operator, only `get` (it checks that the Secrets named by
                # auth.keys exist before rolling pods); nobody lists or watches them.
                assert role["metadata"]["name"] == "strata-operator", role["metadata"]["name"]
                assert rule["resources"] == ["secrets"] and rule["verbs"] == ["get"], rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
            assert "nonResourceURLs" not in rule


def test_dashboard_rbac_is_read_only(default_render):
    rules = rules_of(default_render, "ClusterRole", "strata-dashboard")
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {("strata.dev", "storageservices"), ("", "pods"), ("", "events")}
    for rule in rules:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}


def test_leases_are_not_granted_cluster_wide(default_render):
    for rule in rules_of(default_render, "ClusterRole", "strata-operator"):
        assert "leases" not in rule["resources"]


def normalize_rules(rules: list[dict]) -> set[tuple]:
    out = set()
    for rule in rules:
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                for v in rule.get("verbs", []):
                    out.add((g, r, v))
    return out


def operator_rbac_rules() -> list[dict]:
    binary = p.operator_bin()
    if not binary.is_file():
        raise AssertionError(f"strata-operator binary not found at {binary}: build it or set STRATA_OPERATOR_BIN")
    docs = p.load_all(p.run([str(binary), "rbac"]))
    rules = []
    for d in docs:
        if isinstance(d, list):
            rules += d
        elif d.get("kind") in ("ClusterRole", "Role"):
            rules += d.get("rules", [])
        elif "rules" in d:
            rules += d["rules"]
    assert rules, "strata-operator rbac printed no rules"
    return rules


def test_chart_rbac_file_is_strata_operator_rbac_output():
    binary = p.operator_bin()
    assert binary.is_file(), f"strata-operator binary not found at {binary}"
    assert p.OPERATOR_RULES.read_text() == p.run([str(binary), "rbac"]), (
        "charts/strata/files/operator-rbac-rules.yaml is stale: run `python3 deploy/tests/sync.py --crd`")


def test_operator_rbac_equals_strata_operator_rbac(default_render):
    """The chart grants exactly what the operator says it needs: no more, no less.
    (Lease rules live in the namespaced leader-election Role.)"""
    wanted = normalize_rules(operator_rbac_rules())
    granted = normalize_rules(rules_of(default_render, "ClusterRole", "strata-operator"))
    granted |= normalize_rules(rules_of(default_render, "Role", "strata-operator-leader-election"))
    assert granted == wanted, (
        f"missing: {sorted(wanted - granted)}\nextra: {sorted(granted - wanted)}")


# ------------------------------------------------------------------- monitoring

def test_chart_prometheus_rule_equals_rules_file(all_render):
    shipped = yaml.safe_load(p.RULES.read_text())["groups"]
    rule = p.by_kind(all_render, "PrometheusRule")[0]
    groups = rule["spec"]["groups"]
    assert [g["name"] for g in groups] == [g["name"] for g in shipped]
    for got, want in zip(groups, shipped):
        assert len(got["rules"]) == len(want["rules"])
        for g, w in zip(got["rules"], want["rules"]):
            labels = dict(g.get("labels", {}))
            # additionalAlertLabels are added, never override the rule's own labels
            assert labels.pop("team") == "storage"
            assert labels == w.get("labels", {})
            assert {k: v for k, v in g.items() if k != "labels"} == \
                   {k: v for k, v in w.items() if k != "labels"}


def test_chart_prometheus_rule_passes_promtool(all_render, tmp_path):
    rule = p.by_kind(all_render, "PrometheusRule")[0]
    f = tmp_path / "rendered-rules.yaml"
    f.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    p.run([p.tool("promtool"), "check", "rules", str(f)])


MONITOR_FIELDS = {
    "ServiceMonitor": ({"selector", "namespaceSelector", "endpoints"},
                       {"port", "path", "interval", "scrapeTimeout", "scheme", "relabelings"}),
    "PodMonitor": ({"selector", "namespaceSelector", "podMetricsEndpoints", "jobLabel"},
                   {"port", "path", "interval", "scrapeTimeout", "scheme", "relabelings"}),
}


def test_monitors_are_well_formed(all_render):
    """kubernetes-validate has no schema for monitoring.coreos.com: check the fields we use."""
    for kind, (spec_fields, endpoint_fields) in MONITOR_FIELDS.items():
        objs = p.by_kind(all_render, kind)
        assert objs, kind
        for o in objs:
            assert o["apiVersion"] == "monitoring.coreos.com/v1"
            assert set(o["spec"]) <= spec_fields
            endpoints = o["spec"].get("endpoints") or o["spec"].get("podMetricsEndpoints")
            assert endpoints
            for e in endpoints:
                assert set(e) <= endpoint_fields
                assert e["port"] == "http"
                for r in e.get("relabelings", []):
                    assert set(r) <= {"sourceLabels", "targetLabel", "action", "regex", "replacement", "separator"}
    pm = p.by_kind(all_render, "PodMonitor")[0]
    # the operator's server pods carry app.kubernetes.io/name=strata-server
    assert pm["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "strata-server"}}
    # job = StorageService name, the grouping label of the alert rules
    assert pm["spec"]["jobLabel"] == "app.kubernetes.io/instance"


def test_grafana_configmap_holds_the_dashboard(all_render):
    cm = [o for o in p.by_kind(all_render, "ConfigMap") if o["metadata"]["name"].endswith("grafana-dashboard")][0]
    assert cm["data"]["strata.json"].strip() == p.GRAFANA.read_text().strip()
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_notes_tell_what_to_apply_next():
    out = p.run([p.tool("helm"), "install", p.RELEASE, str(p.CHART), "--namespace", p.NAMESPACE,
                 "--dry-run=client"])
    notes = out.split("NOTES:", 1)[1]
    assert "kind: StorageService" in notes
    assert "kubectl get storageservices" in notes
    # the backend choice: single-node means one pod, shared backends scale out
    assert "filesystem / memory keep objects inside one pod" in notes
    assert "bigtable, s3compatible or tiered" in notes
    assert "port-forward service/strata-dashboard" in notes


def test_packaged_chart_renders_like_the_directory(tmp_path):
    """.helmignore keeps everything the templates read (files/, crds/)."""
    p.run([p.tool("helm"), "package", str(p.CHART), "-d", str(tmp_path)])
    (tgz,) = tmp_path.glob("strata-*.tgz")
    args = ["--namespace", p.NAMESPACE, "--include-crds", "-f", str(p.ALL_FEATURES_VALUES)]
    from_dir = p.run([p.tool("helm"), "template", p.RELEASE, str(p.CHART), *args])
    from_tgz = p.run([p.tool("helm"), "template", p.RELEASE, str(tgz), *args])
    assert p.load_all(from_tgz) == p.load_all(from_dir)

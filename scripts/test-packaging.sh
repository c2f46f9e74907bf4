#!/usr/bin/env bash
# Packaging tests: Helm chart, kustomize base/overlays, alert rules, Grafana dashboard,
# CRD copies and example StorageServices, metric names, and a real Prometheus firing
# the panic alert against a real strata-server.
#
# Needs the tools of scripts/setup-packaging-tools.sh (helm + kubectl in ./tools,
# promtool + prometheus, kubernetes-validate, Python packages) and built binaries:
#   STRATA_SERVER_BIN    (default $CARGO_TARGET_DIR/debug/strata-server)
#   STRATA_OPERATOR_BIN  (default $CARGO_TARGET_DIR/debug/strata-operator)
# Idempotent: writes only to a temporary directory. Exits non-zero on any failure and
# ends with `packaging: N passed, M failed`.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export STRATA_SERVER_BIN="${STRATA_SERVER_BIN:-$CARGO_TARGET_DIR/debug/strata-server}"
export STRATA_OPERATOR_BIN="${STRATA_OPERATOR_BIN:-$CARGO_TARGET_DIR/debug/strata-operator}"
# Kubernetes versions the manifests are validated against: the chart's minimum
# (kubeVersion >= 1.27) and the kubectl in use.
KUBE_VERSIONS="${KUBE_VERSIONS:-1.27.0 1.35.0}"

HELM="$ROOT/tools/helm/helm"
KUBECTL="$ROOT/tools/kubectl/kubectl"
[[ -x "$HELM" ]] || HELM="$(command -v helm || true)"
[[ -x "$KUBECTL" ]] || KUBECTL="$(command -v kubectl || true)"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# shellcheck source=checks.sh
source scripts/checks.sh

need() {
  for tool in "$@"; do
    if [[ "$tool" == */* ]]; then [[ -x "$tool" ]] && continue
    else command -v "$tool" >/dev/null && continue
    fi
    echo "missing tool: $tool (run scripts/setup-packaging-tools.sh)" >&2
    return 1
  done
}
step "tools are installed" need "$HELM" "$KUBECTL" promtool prometheus kubernetes-validate python3

CHART=charts/strata
ALL_FEATURES=$CHART/ci/all-features-values.yaml

# --- Helm --------------------------------------------------------------------------
step "helm lint (default values)" "$HELM" lint --strict "$CHART"
step "helm lint (all-features values)" "$HELM" lint --strict "$CHART" -f "$ALL_FEATURES"

render() { # render OUT [helm args...]
  local out="$1"; shift
  "$HELM" template strata "$CHART" --namespace strata-system --include-crds "$@" >"$out"
}
validate() { # validate FILE: strict schema validation against every KUBE_VERSIONS
  local file="$1" v out
  [[ -s "$file" ]] || { echo "$file is empty"; return 1; }
  for v in $KUBE_VERSIONS; do
    out="$(kubernetes-validate --strict --quiet -k "$v" "$file" 2>&1)" || { echo "$out"; return 1; }
    # Only custom resources may lack a schema (checked by the Python tests instead).
    if grep -v "Couldn't find schema for kind \(ServiceMonitor\|PodMonitor\|PrometheusRule\|StorageService\) " <<<"$out" \
        | grep -E "WARN|ERROR"; then
      return 1
    fi
  done
}
step "helm template (default values)" render "$TMP/chart-default.yaml"
step "helm template (all-features values)" render "$TMP/chart-all.yaml" -f "$ALL_FEATURES"
step "kubernetes-validate: chart, default values" validate "$TMP/chart-default.yaml"
step "kubernetes-validate: chart, all-features values" validate "$TMP/chart-all.yaml"

# --- kustomize -----------------------------------------------------------------------
for dir in deploy/base deploy/overlays/*/; do
  dir="${dir%/}"
  out="$TMP/kustomize-$(basename "$dir").yaml"
  step "kubectl kustomize $dir" sh -c "'$KUBECTL' kustomize '$dir' >'$out'"
  step "kubernetes-validate: $dir" validate "$out"
done

# --- Prometheus rules ------------------------------------------------------------------
step "promtool check rules" promtool check rules deploy/prometheus/strata-rules.yaml
step "promtool test rules (every alert fires and stays silent)" \
  promtool test rules deploy/prometheus/tests/*.test.yaml
alerts_have_runbooks() {
  python3 - <<'PY'
import re, sys, yaml
rules = yaml.safe_load(open("deploy/prometheus/strata-rules.yaml"))
runbook = open("docs/runbook.md").read()
tests = "".join(open(f).read() for f in __import__("glob").glob("deploy/prometheus/tests/*.test.yaml"))
sections = {m.lower() for m in re.findall(r"^## (\S+)", runbook, re.M)}
bad = []
for g in rules["groups"]:
    for r in g["rules"]:
        name = r.get("alert")
        if not name:
            continue
        a, l = r.get("annotations", {}), r.get("labels", {})
        if l.get("severity") not in ("critical", "warning"):
            bad.append(f"{name}: severity must be critical or warning")
        for k in ("summary", "description", "runbook_url"):
            if not a.get(k):
                bad.append(f"{name}: no {k}")
        if not a.get("runbook_url", "").endswith("#" + name.lower()):
            bad.append(f"{name}: runbook_url must end with #{name.lower()}")
        if name.lower() not in sections:
            bad.append(f"{name}: no '## {name}' section in docs/runbook.md")
        if f"alertname: {name}\n" not in tests:
            bad.append(f"{name}: no promtool unit test")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
}
step "every alert: severity, summary, description, runbook section, unit test" alerts_have_runbooks
step "Grafana dashboard is valid JSON" python3 -m json.tool deploy/grafana/strata.json

# --- Python tests: chart semantics, CRD + examples, metric names, real Prometheus -------
pytest_run() {
  python3 -m pytest -q -p no:cacheprovider deploy/tests "$@"
}
echo "---- python -m pytest deploy/tests"
pytest_run 2>&1 | tee "$TMP/pytest.log"
pytest_rc=${PIPESTATUS[0]}
# Each pytest test counts as one check in the summary.
summary="$(grep -E '^=* ?[0-9]+ (passed|failed|error)' "$TMP/pytest.log" | tail -n 1 || true)"
[[ -n "$summary" ]] || summary="$(tail -n 1 "$TMP/pytest.log")"
count() { grep -oE "[0-9]+ $1" <<<"$summary" | grep -oE '^[0-9]+' || echo 0; }
py_passed=$(count passed); py_failed=$(count failed); py_errors=$(count error)
passed=$((passed + py_passed))
failed=$((failed + py_failed + py_errors))
if ((pytest_rc != 0)); then
  failures+=("pytest deploy/tests (exit $pytest_rc)")
  # a crash or collection error without counted failures still fails the run
  ((py_failed + py_errors > 0)) || failed=$((failed + 1))
  echo "FAIL - pytest deploy/tests"
elif ((py_passed == 0)); then
  failures+=("pytest deploy/tests ran no test"); failed=$((failed + 1))
  echo "FAIL - pytest deploy/tests ran no test"
else
  echo "ok   - pytest deploy/tests ($py_passed tests)"
fi

checks_summary packaging

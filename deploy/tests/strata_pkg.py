"""Shared helpers of the packaging tests: paths, tools, rendering and YAML handling.

Tools come from ./tools (scripts/setup-packaging-tools.sh) or PATH; the Strata
binaries from STRATA_SERVER_BIN / STRATA_OPERATOR_BIN, defaulting to the cargo
target directory.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "strata"
ALL_FEATURES_VALUES = CHART / "ci" / "all-features-values.yaml"
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
MONITORING_OVERLAY = DEPLOY / "overlays" / "monitoring"
RULES = DEPLOY / "prometheus" / "strata-rules.yaml"
GRAFANA = DEPLOY / "grafana" / "strata.json"
EXAMPLES = DEPLOY / "examples"
CHART_CRD = CHART / "crds" / "storageservice.yaml"
BASE_CRD = BASE / "crd.yaml"
OPERATOR_RULES = CHART / "files" / "operator-rbac-rules.yaml"

# The chart rendered as the kustomize base is: release "strata" in "strata-system".
RELEASE = "strata"
NAMESPACE = "strata-system"

# Labels only Helm sets; the kustomize base has its own managed-by label.
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def server_bin() -> Path:
    return Path(os.environ.get("STRATA_SERVER_BIN", target_dir() / "debug" / "strata-server"))


def operator_bin() -> Path:
    return Path(os.environ.get("STRATA_OPERATOR_BIN", target_dir() / "debug" / "strata-operator"))


def tool(name: str) -> str:
    """Path of helm/kubectl (./tools first), promtool, prometheus, kubernetes-validate."""
    local = ROOT / "tools" / name / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: run scripts/setup-packaging-tools.sh")
    return found


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM a child we started, waiting up to 15 s before SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: list[str], **kw) -> str:
    """Runs a command, returns stdout; raises with stderr in the message on failure."""
    proc = subprocess.run(args, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(map(str, args))}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def load_all(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def helm_template(*values_files: Path, set_values: tuple[str, ...] = (), include_crds: bool = False) -> list[dict]:
    args = [tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for f in values_files:
        args += ["-f", str(f)]
    for s in set_values:
        args += ["--set", s]
    if include_crds:
        args.append("--include-crds")
    return load_all(run(args))


def kustomize(path: Path) -> list[dict]:
    return load_all(run([tool("kubectl"), "kustomize", str(path)]))


def key(obj: dict) -> tuple[str, str, str, str]:
    meta = obj.get("metadata", {})
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def strip_helm_labels(obj: dict) -> dict:
    """A copy without the labels that only Helm (or only kustomize) sets."""
    obj = copy.deepcopy(obj)

    def clean(meta: dict | None) -> None:
        if not meta:
            return
        labels = meta.get("labels")
        if labels is not None:
            for name in HELM_ONLY_LABELS:
                labels.pop(name, None)
            if not labels:
                del meta["labels"]

    clean(obj.get("metadata"))
    template = obj.get("spec", {}).get("template") if isinstance(obj.get("spec"), dict) else None
    if isinstance(template, dict):
        clean(template.get("metadata"))
    return obj


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def pod_specs(objs: list[dict]):
    """(object, pod spec) for every workload."""
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield o, o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield o, o["spec"]


# strata_* names, plus the process_* names the server exports (used by the rules)
METRIC_RE = re.compile(r"\b(?:strata|process)_[a-z0-9_]+")
# Rust crate identifiers that look like metric names but are not.
CRATE_NAMES = {"strata_server", "strata_operator", "strata_dashboard"}


def metric_names(text: str) -> set[str]:
    return {m for m in METRIC_RE.findall(text) if m not in CRATE_NAMES}

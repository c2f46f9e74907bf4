#!/usr/bin/env bash
# The project's test command: sets up a fresh machine (scripts/setup.sh), builds the
# workspace once, then runs every suite: Rust unit + integration tests (nextest), the
# chaos harnesses' short modes (tools/chaos), the real Python objectstore client against a running server, the packaging checks (Helm,
# kustomize, promtool, a real Prometheus firing the panic alert), the local scripts
# (demo), and the container images (buildah + podman/runc). Before building, cargo-deny
# checks the dependency graph against deny.toml.
#
# Environment:
#   CARGO_TARGET_DIR      build directory (default ~/.cache/strata-target, shared with
#                         scripts/run-local.sh, scripts/demo.sh, scripts/build-images.sh)
#   KUBECONFIG            when set, the operator's end-to-end suite runs against that
#                         cluster (with STRATA_E2E_IMAGE as the server image); otherwise
#                         it is reported as skipped
#   STRATA_IMAGE_PROFILE  cargo profile of the image binaries (default: dev, i.e. the
#                         binaries this command already built: no second compile;
#                         `release` tests exactly what a release publishes: a second
#                         compile, 13.4 CPU-min, ~7 min on 2 idle cores)
#   STRATA_SKIP_IMAGES=1  skip the container image tests (reported as skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
source scripts/lib.sh

export CARGO_TERM_COLOR=never
export STRATA_ARTIFACTS="${STRATA_ARTIFACTS:-$CARGO_TARGET_DIR/artifacts}"
mkdir -p "$STRATA_ARTIFACTS"

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

step "setup"
bash scripts/setup.sh

step "format"
cargo fmt --all -- --check

step "dependency policy (deny.toml: bans, licenses, sources)"
# Advisories need the RustSec database from the network: see RELIABILITY.md, Security.
cargo deny check bans licenses sources

step "dependency direction (operator: no storage server, axum or hyper server; dashboard: neither crate)"
# The architecture contract (docs/architecture.md): the operator and the dashboard link only
# the contracts crate, and the operator answers its probes without an HTTP server stack.
operator_tree="$(cargo tree -p strata-operator --locked)"
dashboard_tree="$(cargo tree -p strata-dashboard --locked)"
hyper_features="$(cargo tree -p strata-operator --locked -e features -i hyper)"
if grep -E ' (strata-server|axum) v' <<<"$operator_tree" \
  || grep -F 'hyper feature "server"' <<<"$hyper_features" \
  || grep -E ' (strata-server|strata-operator) v' <<<"$dashboard_tree"; then
  echo "a crate links what the architecture keeps out of it (lines above)" >&2
  exit 1
fi
echo "operator and dashboard link neither strata-server nor an HTTP server stack"

step "build"
strata_build

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

export STRATA_SERVER_BIN="$STRATA_BIN_DIR/strata-server"
export STRATA_OPERATOR_BIN="$STRATA_BIN_DIR/strata-operator"
export STRATA_DASHBOARD_BIN="$STRATA_BIN_DIR/strata-dashboard"

step "rust tests"
# Suites that need something this machine may not have (a Kubernetes cluster) are
# #[ignore]d: nextest counts them as skipped and lists them at the end.
cargo nextest run --workspace --locked --no-fail-fast --final-status-level skip
if [[ -n "${KUBECONFIG:-}" ]]; then
  step "operator end-to-end suite (KUBECONFIG=$KUBECONFIG)"
  cargo nextest run --locked -p strata-operator --test e2e --run-ignored only
else
  echo "operator end-to-end suite: SKIPPED (no KUBECONFIG; see README, For platform teams)"
fi

step "chaos harnesses (short: crash, overload, panic-storm, disconnect; see RELIABILITY.md)"
"$STRATA_BIN_DIR/strata-chaos" all --seed 1 --server-bin "$STRATA_SERVER_BIN"

step "python client tests"
python3 -m pytest -q server/tests/python

step "client suites against two servers sharing one keyspace (Bigtable emulator + S3)"
STRATA_TEST_PAIR=1 cargo nextest run --workspace --locked -E "binary(rust_client)"
STRATA_TEST_PAIR=1 python3 -m pytest -q server/tests/python

if [ -f scripts/test-packaging.sh ]; then
  step "packaging and alerting"
  bash scripts/test-packaging.sh
fi

step "local scripts"
bash scripts/test-scripts.sh

if [[ "${STRATA_SKIP_IMAGES:-0}" == 1 ]]; then
  echo "container images: SKIPPED (STRATA_SKIP_IMAGES=1)"
else
  step "container images"
  STRATA_IMAGE_PROFILE="${STRATA_IMAGE_PROFILE:-dev}" bash scripts/test-images.sh
fi

#!/usr/bin/env bash
# The project's test command: sets up a fresh machine (scripts/setup.sh), builds the
# workspace once, then runs every suite: Rust unit + integration tests (nextest), the
# real Python objectstore client against a running server, and the packaging checks
# (Helm, kustomize, promtool, a real Prometheus firing the panic alert).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
export CARGO_TERM_COLOR=never
# Incremental artifacts only grow a long-lived target directory; CI builds are one-shot.
export CARGO_INCREMENTAL=0
export STRATA_ARTIFACTS="${STRATA_ARTIFACTS:-$CARGO_TARGET_DIR/artifacts}"
mkdir -p "$STRATA_ARTIFACTS"

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

step "setup"
bash scripts/setup.sh

step "format"
cargo fmt --all -- --check

step "build"
cargo build --workspace --all-targets --locked

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

export STRATA_SERVER_BIN="$CARGO_TARGET_DIR/debug/strata-server"
export STRATA_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/strata-operator"
export STRATA_DASHBOARD_BIN="$CARGO_TARGET_DIR/debug/strata-dashboard"

step "rust tests"
cargo nextest run --workspace --locked --no-fail-fast

step "python client tests"
python3 -m pytest -q server/tests/python

step "client suites against two servers sharing one keyspace (Bigtable emulator + S3)"
STRATA_TEST_PAIR=1 cargo nextest run -p strata-server --locked --test rust_client
STRATA_TEST_PAIR=1 python3 -m pytest -q server/tests/python

if [ -f scripts/test-packaging.sh ]; then
  step "packaging and alerting"
  bash scripts/test-packaging.sh
fi

#!/usr/bin/env bash
# Runs Strata locally: a strata-server on the embedded filesystem backend (data in
# ./data, config in config/local.yaml) plus the dashboard pointed at it.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
SERVER_PORT="${STRATA_PORT:-8888}"
DASHBOARD_PORT="${STRATA_DASHBOARD_PORT:-8080}"

cargo build --release --bin strata-server --bin strata-dashboard
bin="$CARGO_TARGET_DIR/release"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

mkdir -p data
STRATA__HTTP__ADDR="127.0.0.1:${SERVER_PORT}" \
  "$bin/strata-server" run --config config/local.yaml &
pids+=($!)

"$bin/strata-dashboard" --listen "127.0.0.1:${DASHBOARD_PORT}" \
  --target "local=http://127.0.0.1:${SERVER_PORT}" &
pids+=($!)

sleep 1
echo
echo "strata-server: http://127.0.0.1:${SERVER_PORT}  (data in $(pwd)/data)"
echo "dashboard:     http://127.0.0.1:${DASHBOARD_PORT}"
echo "Press Ctrl-C to stop."
wait

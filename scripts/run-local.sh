#!/usr/bin/env bash
# Runs Strata locally: a strata-server on the embedded filesystem backend (data in
# ./data, config in config/local.yaml) plus the dashboard pointed at it.
# Ctrl-C stops both.
#
# Builds with the test command's build (scripts/lib.sh: same command, dev profile, same
# directory ~/.cache/strata-target), so after `bash .ci/run` it starts at once.
#
# Environment: STRATA_SERVER_PORT (8888), STRATA_DASHBOARD_PORT (8080), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
source scripts/lib.sh

strata_require_free_ports run-local.sh "$STRATA_SERVER_PORT" "$STRATA_DASHBOARD_PORT"
echo "==> building (cargo build --workspace --all-targets into $CARGO_TARGET_DIR)"
strata_build
# Again: the build may have taken minutes.
strata_require_free_ports run-local.sh "$STRATA_SERVER_PORT" "$STRATA_DASHBOARD_PORT"
bin="$STRATA_BIN_DIR"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

mkdir -p data
STRATA__HTTP__ADDR="127.0.0.1:${STRATA_SERVER_PORT}" \
  "$bin/strata-server" run --config config/local.yaml &
pids+=($!)

"$bin/strata-dashboard" --listen "127.0.0.1:${STRATA_DASHBOARD_PORT}" \
  --target "local=http://127.0.0.1:${STRATA_SERVER_PORT}" &
pids+=($!)

strata_wait_for_url "http://127.0.0.1:${STRATA_SERVER_PORT}/health" ||
  echo "strata-server does not answer yet on port ${STRATA_SERVER_PORT}" >&2
echo
echo "strata-server: http://127.0.0.1:${STRATA_SERVER_PORT}  (data in $(pwd)/data)"
echo "dashboard:     http://127.0.0.1:${STRATA_DASHBOARD_PORT}"
echo "Press Ctrl-C to stop."
wait

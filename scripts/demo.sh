#!/usr/bin/env bash
# One-command local demo of the Strata dashboard:
#   a strata-server with fault injection (panic/ and slow/ keys) on 127.0.0.1:8888,
#   a small curl load loop (normal keys, panics, bursts of slow requests that saturate
#   the service tier and get 429s), and the dashboard on 127.0.0.1:8080 scraping it.
# Ctrl-C stops everything this script started. It refuses to start when either port is
# already taken (an earlier run, a local server), rather than talk to someone else's.
#
# Builds with the test command's build (scripts/lib.sh: same command, dev profile, same
# directory ~/.cache/strata-target), so after `bash .ci/run` it starts at once.
#
# Environment knobs:
#   STRATA_SERVER_PORT (8888)       STRATA_DASHBOARD_PORT (8080)
#   STRATA_DEMO_STORAGE=memory|filesystem (memory; filesystem keeps objects in ./data)
#   STRATA_DEMO_SECONDS=N           stop by itself after N seconds (default: run until Ctrl-C)
#   STRATA_DEMO_LOGS=DIR            write the server and dashboard logs there (default: a
#                                   temporary directory removed at exit)
#   STRATA_DEMO_BACKTRACE=1         print a full backtrace for every injected panic (by
#                                   default a short message each, whatever RUST_BACKTRACE says)
#   CARGO_TARGET_DIR                where cargo builds (default: ~/.cache/strata-target)
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
source scripts/lib.sh
SERVER_PORT=$STRATA_SERVER_PORT
DASH_PORT=$STRATA_DASHBOARD_PORT
STORAGE=${STRATA_DEMO_STORAGE:-memory}
SERVER_URL="http://127.0.0.1:${SERVER_PORT}"
DASH_URL="http://127.0.0.1:${DASH_PORT}"

for tool in cargo curl python3; do
  command -v "$tool" >/dev/null || { echo "demo.sh: $tool is required" >&2; exit 1; }
done
strata_require_free_ports demo.sh "$SERVER_PORT" "$DASH_PORT"
# The demo panics on purpose every few seconds: a short message per panic, not a backtrace,
# unless asked for with STRATA_DEMO_BACKTRACE=1.
if [ "${STRATA_DEMO_BACKTRACE:-0}" = 1 ]; then
  export RUST_BACKTRACE=1
else
  export RUST_BACKTRACE=0
fi

echo "==> building (cargo build --workspace --all-targets into $CARGO_TARGET_DIR)"
strata_build
# Again: the build may have taken minutes.
strata_require_free_ports demo.sh "$SERVER_PORT" "$DASH_PORT"

WORK=$(mktemp -d -t strata-demo.XXXXXX)
LOGS=${STRATA_DEMO_LOGS:-$WORK}
mkdir -p "$LOGS"
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "==> stopping demo"
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$STORAGE" = "filesystem" ]; then
  mkdir -p "$ROOT/data"
  STORAGE_YAML="  type: filesystem
  path: \"$ROOT/data\""
else
  STORAGE_YAML="  type: memory"
fi

cat >"$WORK/server.yaml" <<YAML
http:
  addr: "127.0.0.1:${SERVER_PORT}"
  max_requests: 64
  drain_file: "$WORK/strata.down"
service:
  # Small on purpose: a burst of slow/ requests saturates it and the rest get 429.
  max_concurrency: 4
  queue_depth: 0
storage:
${STORAGE_YAML}
faults:
  panic_key_prefix: "panic/"
  delay_key_prefix: "slow/"
  delay: 2s
# The demo runs without access control (no signing keys).
auth:
  enforce: false
YAML

echo "==> starting strata-server (faults: panic/ keys panic, slow/ keys sleep 2s)"
"$STRATA_BIN_DIR/strata-server" run --config "$WORK/server.yaml" >"$LOGS/server.log" 2>&1 &
PIDS+=($!)
strata_wait_for_url "$SERVER_URL/health" || { echo "strata-server did not start; log:"; cat "$LOGS/server.log"; exit 1; }

echo "==> starting strata-dashboard"
"$STRATA_BIN_DIR/strata-dashboard" --listen "127.0.0.1:${DASH_PORT}" \
  --target "local=${SERVER_URL}" --scrape-interval 2s --refresh 2s >"$LOGS/dashboard.log" 2>&1 &
PIDS+=($!)
strata_wait_for_url "$DASH_URL/healthz" || { echo "strata-dashboard did not start; log:"; cat "$LOGS/dashboard.log"; exit 1; }

# A little load: normal traffic every ~0.5 s, a panic every 10 s, a burst of slow requests
# (more than max_concurrency) every 15 s.
load() {
  local i=0 obj="$SERVER_URL/v1/objects/demo/_"
  while true; do
    i=$((i + 1))
    curl -s -o /dev/null -X PUT --data-binary "hello $i" "$obj/normal/$((i % 20))" || true
    curl -s -o /dev/null "$obj/normal/$(( (i * 7) % 20 ))" || true
    if [ $((i % 20)) -eq 0 ]; then
      curl -s -o /dev/null "$obj/panic/boom-$i" || true
    fi
    if [ $((i % 30)) -eq 5 ]; then
      for j in $(seq 1 12); do
        curl -s -o /dev/null "$obj/slow/s-$j" &
      done
    fi
    sleep 0.5
  done
}
load >/dev/null 2>&1 &
PIDS+=($!)

cat <<MSG

  strata-server     ${SERVER_URL}   (metrics: ${SERVER_URL}/metrics)
  strata-dashboard  ${DASH_URL}/    <- open this

  Within ~20 s the alerts strip turns red (PANIC ... operation get) and the 429/s
  column goes non-zero during the slow/ bursts. Logs: $LOGS/*.log
  Press Ctrl-C to stop.

MSG

if [ -n "${STRATA_DEMO_SECONDS:-}" ]; then
  sleep "$STRATA_DEMO_SECONDS"
  echo "==> overview after ${STRATA_DEMO_SECONDS}s:"
  curl -s "$DASH_URL/fragments/overview" | sed -e 's/<[^>]*>/ /g' | tr -s ' \n' ' ' | cut -c1-600
  echo
  exit 0
fi
wait "${PIDS[0]}"

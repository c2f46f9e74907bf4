#!/usr/bin/env bash
# Checks of the local scripts as a new user meets them (run by scripts/test.sh after the
# build, so the demo's own build step finds nothing to do):
#   - demo.sh refuses to start, saying why, when one of its ports is already taken, and
#     starts nothing;
#   - run-local.sh refuses the same way;
#   - demo.sh's injected panics log a short message each and no backtrace, even with
#     RUST_BACKTRACE=1 in the environment; STRATA_DEMO_BACKTRACE=1 brings them back.
# Ends with `scripts: N passed, M failed`.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TMP="$(mktemp -d -t strata-script-test.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# shellcheck source=checks.sh
source scripts/checks.sh
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A listener that holds a port for as long as it runs (it accepts nothing).
hold_port() {
  python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True); time.sleep(600)' "$1" >"$TMP/hold-$1" &
  pids+=($!)
  for _ in $(seq 1 100); do grep -q ready "$TMP/hold-$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

refuses_taken_port() { # refuses_taken_port SCRIPT WHICH
  local script="$1" which="$2" sport dport taken out code
  sport="$(free_port)"; dport="$(free_port)"
  if [[ "$which" == server ]]; then taken="$sport"; else taken="$dport"; fi
  hold_port "$taken" || return 1
  out="$(STRATA_SERVER_PORT="$sport" STRATA_DASHBOARD_PORT="$dport" STRATA_DEMO_SECONDS=1 \
    STRATA_DEMO_LOGS="$TMP/refused" timeout 120 bash "$script" 2>&1)"
  code=$?
  echo "$out"; echo "exit status $code"
  ((code != 0 && code != 124)) || return 1
  grep -q "port $taken on 127.0.0.1 is already in use" <<<"$out" || return 1
  # Nothing was started: no logs, and the other port is still free.
  [[ ! -e "$TMP/refused/server.log" ]] || { echo "it started a server"; return 1; }
}
step "demo.sh refuses to start when its server port is taken" refuses_taken_port scripts/demo.sh server
step "demo.sh refuses to start when its dashboard port is taken" refuses_taken_port scripts/demo.sh dashboard
step "run-local.sh refuses to start when its server port is taken" refuses_taken_port scripts/run-local.sh server

# demo_panics BACKTRACE: runs the demo, makes its server panic once and returns the
# server log in $TMP/demo-BACKTRACE/server.log.
demo_panics() {
  local bt="$1" sport dport logs="$TMP/demo-$1" demo i
  sport="$(free_port)"; dport="$(free_port)"
  RUST_BACKTRACE=1 STRATA_DEMO_BACKTRACE="$bt" STRATA_SERVER_PORT="$sport" \
    STRATA_DASHBOARD_PORT="$dport" STRATA_DEMO_SECONDS=120 STRATA_DEMO_LOGS="$logs" \
    bash scripts/demo.sh >"$TMP/demo-$bt.out" 2>&1 &
  demo=$!
  pids+=($demo)
  for i in $(seq 1 600); do
    curl -fsS -o /dev/null "http://127.0.0.1:$dport/healthz" 2>/dev/null && break
    kill -0 "$demo" 2>/dev/null || { cat "$TMP/demo-$bt.out"; return 1; }
    sleep 0.1
  done
  # One injected panic of our own (the demo's load makes more): a 500, one log entry.
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$sport/v1/objects/demo/_/panic/check")" == 500 ]] || return 1
  for i in $(seq 1 100); do
    grep -q "storage operation panicked" "$logs/server.log" 2>/dev/null && break
    sleep 0.1
  done
  kill -TERM "$demo"; wait "$demo" 2>/dev/null
  grep -q "storage operation panicked" "$logs/server.log" || { echo "no panic in the server log"; cat "$logs/server.log"; return 1; }
}
no_backtrace_by_default() {
  demo_panics 0 || return 1
  grep -n "panicked\|panic/check" "$TMP/demo-0/server.log" | head -n 5
  if grep -q "stack backtrace:" "$TMP/demo-0/server.log"; then
    echo "backtrace printed although not asked for:"; head -n 40 "$TMP/demo-0/server.log"; return 1
  fi
}
step "demo.sh: injected panics print no backtrace, even with RUST_BACKTRACE=1 set" no_backtrace_by_default
backtrace_when_asked() {
  demo_panics 1 || return 1
  grep -q "stack backtrace:" "$TMP/demo-1/server.log"
}
step "demo.sh: STRATA_DEMO_BACKTRACE=1 prints the backtraces" backtrace_when_asked

checks_summary scripts

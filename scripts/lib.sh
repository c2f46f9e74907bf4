# Shared by scripts/test.sh, scripts/run-local.sh and scripts/demo.sh (sourced, not run).
#
# One build: all three build the workspace with the same command, profile (dev), flags
# and directory, so whichever runs first compiles (~10 min cold on 2 cores) and the
# others only check that nothing changed (seconds). Cargo rebuilds whenever the target
# selection, features, profile or flags differ, so none of these may drift apart.
#
# One set of ports: STRATA_SERVER_PORT (8888) and STRATA_DASHBOARD_PORT (8080).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"
# Incremental artifacts only grow a long-lived target directory; these builds are
# one-shot. (Part of cargo's fingerprint: it must be the same for every script.)
export CARGO_INCREMENTAL=0
# Where the binaries of strata_build land.
STRATA_BIN_DIR="$CARGO_TARGET_DIR/debug"
STRATA_SERVER_PORT="${STRATA_SERVER_PORT:-8888}"
STRATA_DASHBOARD_PORT="${STRATA_DASHBOARD_PORT:-8080}"

# strata_build: the workspace build (binaries, tests, benches, examples), dev profile.
strata_build() {
  (cd "$ROOT" && cargo build --workspace --all-targets --locked)
}

# strata_port_in_use PORT: true when something on this machine listens on 127.0.0.1:PORT
# or on all addresses at PORT.
strata_port_in_use() {
  python3 - "$1" <<'PY'
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
# Like the servers themselves: a port held only by closed connections (TIME_WAIT) is free.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", port))
except OSError:
    sys.exit(0)  # taken
finally:
    s.close()
sys.exit(1)
PY
}

# strata_require_free_ports WHO PORT...: exits with a clear message when a port is taken
# (say, by an earlier run that is still up), instead of talking to whatever holds it.
strata_require_free_ports() {
  local who="$1" port; shift
  for port in "$@"; do
    if strata_port_in_use "$port"; then
      echo "$who: port $port on 127.0.0.1 is already in use (another strata-server or dashboard still running?)." >&2
      echo "$who: stop it, or pick other ports: STRATA_SERVER_PORT=... STRATA_DASHBOARD_PORT=..." >&2
      exit 1
    fi
  done
}

# strata_wait_for_url URL: polls URL (up to 10 s) until it answers 2xx; false if it never does.
strata_wait_for_url() {
  for _ in $(seq 1 100); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

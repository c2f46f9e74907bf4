#!/usr/bin/env bash
# Measures what JWT verification costs on small-object GETs: the same release server and
# load run, once with access control off and once enforcing an EdDSA token per request.
#
#   cargo build --release -p strata-server --bins
#   scripts/bench-auth.sh            (BIN defaults to $CARGO_TARGET_DIR/release or target/release)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
DURATION="${DURATION:-10s}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

openssl genpkey -algorithm ed25519 -out "$WORK/k.pem"
openssl pkey -in "$WORK/k.pem" -pubout -out "$WORK/k.pub.pem"
TOKEN="$(python3 - "$WORK/k.pem" <<'PY'
import base64, json, sys, time
from cryptography.hazmat.primitives.serialization import load_pem_private_key
key = load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "EdDSA", "kid": "bench", "typ": "JWT"}).encode())
body = b64(json.dumps({"exp": int(time.time()) + 3600, "res": {"os:usecase": "load-test"},
                       "permissions": ["object.read", "object.write", "object.delete"]}).encode())
print(f"{head}.{body}.{b64(key.sign(f'{head}.{body}'.encode()))}")
PY
)"

start() { # name auth-yaml
  cat >"$WORK/$1.yaml" <<YAML
http: {addr: "127.0.0.1:0", drain_file: "$WORK/$1.down"}
storage: {type: memory}
logging: {level: warn}
$2
YAML
  "$BIN/strata-server" run --config "$WORK/$1.yaml" >"$WORK/$1.out" 2>"$WORK/$1.log" &
  PIDS+=($!)
  for _ in $(seq 100); do
    addr=$(grep -o 'listening on http://[0-9.:]*' "$WORK/$1.out" 2>/dev/null | head -1 | sed 's|listening on ||') || true
    [ -n "${addr:-}" ] && { echo "$addr"; return; }
    sleep 0.1
  done
  echo "server $1 did not start" >&2; cat "$WORK/$1.log" >&2; exit 1
}

OFF=$(start off "auth: {enforce: false}")
ON=$(start on "auth: {enforce: true, keys: {bench: {key_files: [$WORK/k.pub.pem], max_permissions: [object.read, object.write, object.delete]}}}")
COMMON=(--op get --size 1KiB --keys 100 --concurrency 16 --duration "$DURATION" --warmup 2s)
echo "== auth off"
"$BIN/strata-load" --url "$OFF" "${COMMON[@]}"
echo "== auth enforced (EdDSA JWT verified per request)"
"$BIN/strata-load" --url "$ON" "${COMMON[@]}" --token "$TOKEN"

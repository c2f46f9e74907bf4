#!/usr/bin/env bash
# Container image tests: builds the three images with scripts/build-images.sh (buildah,
# FROM scratch, nothing pulled), loads the OCI archives into a private podman store and
# runs them with runc:
#   - strata-server with a data volume on a read-only root filesystem: /health, GET /,
#     a round trip with the real Python objectstore-client, the non-root uid/gid read from
#     the container's PID 1 (/proc/<pid>/status, NSpid 1), a clear refusal when the data
#     volume is not writable, `podman stop` ending it by itself within its shutdown
#     timeout, and an acknowledged write read back after restarting the container on the
#     same volume;
#   - strata-operator's `crd` output equals charts/ and deploy/ copies;
#   - strata-dashboard against the server container: its overview shows the server;
#   - every image: user, entrypoint, OCI labels, version label = binary version, no shell
#     or package manager (full file list checked), size (recorded; server < 30 MiB).
#
# Needs buildah, podman, runc (scripts/setup.sh), python3 with objectstore-client, curl.
# Environment: STRATA_IMAGE_PROFILE (cargo profile of the binaries, default release;
# scripts/test.sh passes dev to reuse its build),
# CARGO_TARGET_DIR, STRATA_ARTIFACTS (image sizes are written there when set).
# Writes only to a temporary directory (images, containers and volumes included) and
# removes it. Ends with `images: N passed, M failed`.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../images/images.env
source images/images.env
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}"

TMP="$(mktemp -d -t strata-image-test.XXXXXX)"
BUILDAH=(buildah --root "$TMP/build-store" --runroot "$TMP/build-run" --storage-driver vfs)
PODMAN=(podman --root "$TMP/run-store" --runroot "$TMP/run-run" --storage-driver vfs
  --cgroup-manager cgroupfs --runtime runc --events-backend file
  --tmpdir "$TMP/podman-tmp")
# These machines cannot raise hard limits: ask for no more than we have. (podman runs
# conmon with at most 32768 processes, hence the lower cap on nproc.)
NOFILE=$(ulimit -Hn); [[ "$NOFILE" == unlimited || "$NOFILE" -gt 65536 ]] && NOFILE=65536
NPROC=$(ulimit -Hu); [[ "$NPROC" == unlimited || "$NPROC" -gt 4096 ]] && NPROC=4096
RUN_OPTS=(--network host --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC"
  --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,mode=1777,size=64m
  --cap-drop ALL --security-opt no-new-privileges)
UID_GID="$STRATA_IMAGE_UID:$STRATA_IMAGE_UID"
# The server's http.shutdown_timeout in these tests; `podman stop` waits a little longer
# before it would SIGKILL, and the test demands the server exited by itself (status 0).
SHUTDOWN_TIMEOUT=10

cleanup() {
  "${PODMAN[@]}" rm -a -f -t 0 >/dev/null 2>&1 || true
  # vfs stores are plain directories; containers may have left root-owned files.
  rm -rf "$TMP"
}
trap cleanup EXIT

# shellcheck source=checks.sh
source scripts/checks.sh
finish() {
  checks_summary images
  exit
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# wait_http URL CONTAINER: polls URL until it answers 2xx; fails early when the container
# is no longer running.
wait_http() {
  local url="$1" container="$2" i
  for i in $(seq 1 600); do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    if [[ "$("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$container" 2>/dev/null)" != true ]]; then
      echo "$container is not running; its log:"; "${PODMAN[@]}" logs "$container" 2>&1 | tail -n 30
      return 1
    fi
    sleep 0.1
  done
  echo "$url did not answer within 60 s"; "${PODMAN[@]}" logs "$container" 2>&1 | tail -n 30
  return 1
}

VERSION="$(awk '/^\[/{s=$0} s=="[workspace.package]" && /^version *=/ {gsub(/[" ]/,""); sub(/^version=/,""); print; exit}' Cargo.toml)"
LICENSES="$(awk '/^\[/{s=$0} s=="[workspace.package]" && /^license *=/ {gsub(/[" ]/,""); sub(/^license=/,""); print; exit}' Cargo.toml)"
# Computed as build-images.sh does.
if git rev-parse --git-dir >/dev/null 2>&1; then
  REVISION="$(git rev-parse HEAD)"
  git diff --quiet HEAD -- 2>/dev/null || REVISION="$REVISION-dirty"
else
  REVISION=unknown
fi
REGISTRY="${STRATA_REGISTRY:-$STRATA_DEFAULT_REGISTRY}"
image() { echo "$REGISTRY/$1:$VERSION"; }
SERVER="$(image strata-server)"
OPERATOR="$(image strata-operator)"
DASHBOARD="$(image strata-dashboard)"

# --- build and load -----------------------------------------------------------------------
build() {
  STRATA_BUILDAH="${BUILDAH[*]}" bash scripts/build-images.sh "$TMP/archives"
}
step "build-images.sh builds the three images" build
load_archives() {
  local name
  for name in $STRATA_IMAGES; do
    "${PODMAN[@]}" load -q -i "$TMP/archives/$name-$VERSION.oci.tar" || return 1
    "${PODMAN[@]}" image exists "$(image "$name")" || { echo "$(image "$name") not loaded"; return 1; }
  done
}
step "the OCI archives load into a fresh podman store under their tags" load_archives
((failed)) && finish

# --- every image: metadata, file list, size -----------------------------------------------
inspect_image() {
  local name="$1" img; img="$(image "$name")"
  local got
  got="$("${PODMAN[@]}" image inspect -f '{{.Config.User}}' "$img")"
  [[ "$got" == "$UID_GID" ]] || { echo "user: $got, want $UID_GID"; return 1; }
  got="$("${PODMAN[@]}" image inspect -f '{{json .Config.Entrypoint}}' "$img")"
  [[ "$got" == "[\"/usr/local/bin/$name\"]" ]] || { echo "entrypoint: $got"; return 1; }
  local key want
  for key in source version revision licenses; do
    case "$key" in
      source) want="$STRATA_IMAGE_SOURCE" ;; version) want="$VERSION" ;;
      revision) want="$REVISION" ;; licenses) want="$LICENSES" ;;
    esac
    got="$("${PODMAN[@]}" image inspect -f "{{index .Config.Labels \"org.opencontainers.image.$key\"}}" "$img")"
    [[ "$got" == "$want" ]] || { echo "label org.opencontainers.image.$key: '$got', want '$want'"; return 1; }
  done
  echo "user $UID_GID, entrypoint /usr/local/bin/$name, labels ok"
}
# The binary's own version equals the image's version label.
version_matches_label() {
  local name="$1" img label out; img="$(image "$name")"
  label="$("${PODMAN[@]}" image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$img")"
  if [[ "$name" == strata-server ]]; then
    out="$("${PODMAN[@]}" run --rm "${RUN_OPTS[@]}" "$img" version)" || return 1
  else
    out="$("${PODMAN[@]}" run --rm "${RUN_OPTS[@]}" "$img" --version)" || return 1
  fi
  echo "$out"
  [[ "$out" == "$name $label" ]] || { echo "want '$name $label'"; return 1; }
}
# Every file in the image is the binary, a shared library ldd named, or one of the
# small /etc files: no shell, no package manager, nothing else.
file_list() {
  local name="$1" img mnt files bad; img="$(image "$name")"
  mnt="$("${PODMAN[@]}" image mount "$img")" || return 1
  files="$(cd "$mnt" && find . -mindepth 1 \( -type f -o -type l \) | sed 's|^\.||' | sort)"
  dirs="$(cd "$mnt" && find . -mindepth 1 -type d | sed 's|^\.||' | sort | tr '\n' ' ')"
  "${PODMAN[@]}" image unmount "$img" >/dev/null
  echo "$files"
  echo "directories: $dirs"
  bad="$(grep -vE "^(/usr/local/bin/$name|/etc/(passwd|group|nsswitch\.conf)|(/usr)?/lib(64|/x86_64-linux-gnu|/aarch64-linux-gnu)?/[^/]+\.so(\.[0-9]+)*)$" <<<"$files")"
  [[ -z "$bad" ]] || { echo "unexpected files:"; echo "$bad"; return 1; }
  grep -qE '/(sh|bash|dash|busybox|apt|apt-get|dpkg|apk|yum|dnf|rpm)$' <<<"$files" && return 1
  grep -q "^/usr/local/bin/$name$" <<<"$files"
}
no_shell() {
  local img; img="$(image "$1")"
  if "${PODMAN[@]}" run --rm "${RUN_OPTS[@]}" --entrypoint /bin/sh "$img" -c true; then
    echo "/bin/sh ran"; return 1
  fi
  return 0
}
SIZES="$TMP/image-sizes.txt"
: >"$SIZES"
size_of() {
  local name="$1" img bytes; img="$(image "$name")"
  bytes="$("${PODMAN[@]}" image inspect -f '{{.Size}}' "$img")"
  printf '%-18s %6.1f MiB  (%s bytes; archive %s)\n' "$name" "$(awk -v b="$bytes" 'BEGIN { print b / 1048576 }')" \
    "$bytes" "$(du -h "$TMP/archives/$name-$VERSION.oci.tar" | cut -f1)" | tee -a "$SIZES"
  # The size goal is for what users run (release); CI's dev-profile images carry line
  # tables and unoptimised code, so their sizes are only recorded.
  if [[ "${STRATA_IMAGE_PROFILE:-release}" == release && "$name" == strata-server ]] &&
    ((bytes >= 30 * 1024 * 1024)); then
    echo "strata-server image is $bytes bytes, over 30 MiB"; return 1
  fi
}
for name in $STRATA_IMAGES; do
  step "$name: user, entrypoint, OCI labels" inspect_image "$name"
  step "$name: binary version equals the version label" version_matches_label "$name"
  step "$name: only the binary, its shared libraries and /etc/{passwd,group,nsswitch.conf}" file_list "$name"
  step "$name: has no /bin/sh" no_shell "$name"
  step "$name: size recorded (release server under 30 MiB)" size_of "$name"
done
echo "---- image sizes (profile ${STRATA_IMAGE_PROFILE:-release})"
cat "$SIZES"
if [[ -n "${STRATA_ARTIFACTS:-}" ]]; then
  mkdir -p "$STRATA_ARTIFACTS" && cp "$SIZES" "$STRATA_ARTIFACTS/image-sizes.txt"
fi

# --- strata-server ------------------------------------------------------------------------
PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
DATA="$TMP/data"
mkdir -p "$DATA"
chown "$UID_GID" "$DATA"
run_server() { # run_server NAME DATA_DIR [podman run args...]
  local name="$1" data="$2"; shift 2
  "${PODMAN[@]}" run "${RUN_OPTS[@]}" --name "$name" \
    -v "$data:/var/lib/strata" \
    -e "STRATA__HTTP__ADDR=127.0.0.1:$PORT" \
    -e "STRATA__HTTP__SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT}s" \
    -e "STRATA__AUTH__ENFORCE=false" \
    "$@" "$SERVER"
}
start_server() {
  run_server server "$DATA" -d >/dev/null && wait_http "$BASE/health" server
}
step "strata-server starts on a read-only root with a data volume; /health answers" start_server
health_ok() { [[ "$(curl -fsS "$BASE/health")" == OK ]]; }
step "strata-server: GET /health is OK" health_ok
root_says_what_it_is() {
  local body; body="$(curl -fsS "$BASE/")" || return 1
  echo "$body"
  python3 - "$body" "$VERSION" <<'PY'
import json, sys
doc = json.loads(sys.argv[1])
assert doc["name"] == "strata-server", doc
assert doc["version"] == sys.argv[2], doc
assert doc["metrics"] == "/metrics", doc
assert doc["api"].startswith("/v1/objects/"), doc
PY
}
step "strata-server: GET / names the server, its version, the API and /metrics" root_says_what_it_is

CLIENT="$TMP/client.py"
cat >"$CLIENT" <<'PY'
"""put KEYFILE PAYLOAD | get KEYFILE PAYLOAD: the real objectstore client against $BASE."""
import os, sys
from objectstore_client import Client, Usecase

mode, keyfile, payload = sys.argv[1], sys.argv[2], sys.argv[3].encode()
session = Client(os.environ["BASE"]).session(Usecase("images"), org=1, project=2)
if mode == "put":
    key = session.put(payload)
    open(keyfile, "w").write(key)
    print("stored", key)
got = session.get(open(keyfile).read()).payload.read()
assert got == payload, (got, payload)
print("read back", len(got), "bytes")
PY
export BASE
round_trip() { python3 "$CLIENT" put "$TMP/key1" "hello from the image test"; }
step "strata-server: the Python objectstore-client round-trips an object" round_trip
runs_as_non_root() {
  local pid status; pid="$("${PODMAN[@]}" inspect -f '{{.State.Pid}}' server)" || return 1
  status="$(cat "/proc/$pid/status")" || return 1
  grep -E '^(Name|NSpid|Uid|Gid|Groups):' <<<"$status"
  # NSpid's last field is the pid inside the container: this is its /proc/1/status.
  [[ "$(awk '/^NSpid:/ {print $NF}' <<<"$status")" == 1 ]] || { echo "not PID 1 of the container"; return 1; }
  local id="$STRATA_IMAGE_UID"
  grep -qE "^Uid:\s+$id\s+$id\s+$id\s+$id$" <<<"$status" || { echo "uid is not $id"; return 1; }
  grep -qE "^Gid:\s+$id\s+$id\s+$id\s+$id$" <<<"$status" || { echo "gid is not $id"; return 1; }
}
step "strata-server: PID 1 of the container runs as uid/gid $UID_GID" runs_as_non_root
data_on_volume() {
  ls -ln "$DATA" "$DATA/data"
  [[ -f "$DATA/data/LOCK" ]] || { echo "no LOCK in the data volume"; return 1; }
  [[ "$(stat -c %u "$DATA/data/LOCK")" == "$STRATA_IMAGE_UID" ]]
}
step "strata-server: its data lives on the volume, owned by the non-root user" data_on_volume

# --- strata-dashboard against the server container ----------------------------------------
DPORT="$(free_port)"
dashboard_overview() {
  "${PODMAN[@]}" run -d "${RUN_OPTS[@]}" --name dashboard "$DASHBOARD" \
    --listen "127.0.0.1:$DPORT" --target "strata=$BASE" --scrape-interval 1s >/dev/null || return 1
  wait_http "http://127.0.0.1:$DPORT/healthz" dashboard || return 1
  local i body=""
  for i in $(seq 1 300); do
    body="$(curl -fsS "http://127.0.0.1:$DPORT/fragments/overview" || true)"
    grep -q "1 / 1 reachable" <<<"$body" && grep -q "strata" <<<"$body" && {
      sed -e 's/<[^>]*>/ /g' <<<"$body" | tr -s ' \n' ' ' | cut -c1-400; echo; return 0; }
    sleep 0.1
  done
  echo "overview never showed the server as reachable:"; echo "$body" | head -c 2000
  "${PODMAN[@]}" logs dashboard 2>&1 | tail -n 20
  return 1
}
step "strata-dashboard container shows the server container on its overview" dashboard_overview
# stop_by_itself CONTAINER: `podman stop` (SIGTERM) ends it before podman would SIGKILL.
stop_by_itself() {
  local out code
  out="$("${PODMAN[@]}" stop -t $((SHUTDOWN_TIMEOUT + 5)) "$1" 2>&1)"
  echo "$out"
  code="$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' "$1")"
  echo "exit status $code"
  grep -q SIGKILL <<<"$out" && { echo "podman had to SIGKILL it"; return 1; }
  [[ "$code" == 0 ]]
}
step "strata-dashboard: podman stop ends it by itself (exit 0)" stop_by_itself dashboard
"${PODMAN[@]}" rm -f -t 0 dashboard >/dev/null 2>&1

# --- graceful stop, restart on the same volume ----------------------------------------------
graceful_stop() {
  python3 "$CLIENT" put "$TMP/key2" "acknowledged right before the stop" || return 1
  stop_by_itself server
}
step "strata-server: podman stop ends it by itself within its shutdown timeout (exit 0)" graceful_stop
restart_reads_back() {
  "${PODMAN[@]}" start server >/dev/null || return 1
  wait_http "$BASE/health" server || return 1
  python3 "$CLIENT" get "$TMP/key2" "acknowledged right before the stop" &&
    python3 "$CLIENT" get "$TMP/key1" "hello from the image test"
}
step "strata-server: after a restart on the same volume the acknowledged writes read back" restart_reads_back
"${PODMAN[@]}" stop -t $((SHUTDOWN_TIMEOUT + 5)) server >/dev/null 2>&1

refuses_unwritable_volume() {
  local ro="$TMP/not-writable" out code
  mkdir -p "$ro" && chown 0:0 "$ro" && chmod 0755 "$ro"
  out="$(timeout 60 "${PODMAN[@]}" run --name refused "${RUN_OPTS[@]}" -v "$ro:/var/lib/strata" \
    -e "STRATA__HTTP__ADDR=127.0.0.1:$(free_port)" -e "STRATA__AUTH__ENFORCE=false" "$SERVER" 2>&1)"
  code=$?
  echo "$out"; echo "exit status $code"
  ((code != 0 && code != 124)) || { echo "it did not refuse"; return 1; }
  grep -qi "not writable" <<<"$out" && grep -q "/var/lib/strata" <<<"$out"
}
step "strata-server: refuses to start, saying so, when the data volume is not writable" refuses_unwritable_volume

# --- strata-operator ------------------------------------------------------------------------
crd_matches_copies() {
  "${PODMAN[@]}" run --rm "${RUN_OPTS[@]}" "$OPERATOR" crd >"$TMP/crd.yaml" || return 1
  diff -u charts/strata/crds/storageservice.yaml "$TMP/crd.yaml" &&
    diff -u deploy/base/crd.yaml "$TMP/crd.yaml"
}
step "strata-operator: crd output equals charts/strata/crds and deploy/base copies" crd_matches_copies

finish

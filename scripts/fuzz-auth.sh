#!/usr/bin/env bash
# Fuzzes the auth parsers (JWT, pre-signed query, credential sources) for a bounded time.
# Not part of CI: run it by hand or from a scheduled job.
#
#   scripts/fuzz-auth.sh [SECONDS]      (default 60)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_TO_RUN="${1:-60}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2; exit 1; }
cd "$ROOT/server"
cargo +nightly fuzz run auth_parsers -- -max_total_time="$SECONDS_TO_RUN" -max_len=4096

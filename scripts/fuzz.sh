#!/usr/bin/env bash
# Runs every cargo-fuzz target of server/fuzz for a bounded time each: the auth parsers,
# the input parsers (scopes and paths, metadata headers, durations, Range, config), the
# object log's record decoder on raw bytes, its recovery scan on built segments, and
# batch requests against a real in-process server.
# Not part of CI: run it by hand or from a scheduled job. Any crash it finds becomes a
# regression test in the server (see RELIABILITY.md, Fuzzing).
#
#   scripts/fuzz.sh [SECONDS]      (per target, default 60)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly toolchain; without
# nightly, the stable toolchain is used with RUSTC_BOOTSTRAP=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_TO_RUN="${1:-60}"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2; exit 1; }
cd "$ROOT/server"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz() { cargo +nightly fuzz "$@"; }
else
  fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi
# Every target runs even when an earlier one crashes; the crashing ones are listed at the
# end (their inputs are in server/fuzz/artifacts/<target>/) and the script fails.
failed=()
for target in $(fuzz list); do
  echo "=== fuzz $target for ${SECONDS_TO_RUN}s"
  extra=()
  # A batch case is one HTTP round trip (tens per second): start at full length instead of
  # letting libFuzzer grow inputs from a few bytes.
  [[ $target == batch ]] && extra=(-len_control=0)
  fuzz run "$target" -- -max_total_time="$SECONDS_TO_RUN" -max_len=4096 "${extra[@]}" || failed+=("$target")
done
if ((${#failed[@]})); then
  echo "crashed: ${failed[*]} (inputs under server/fuzz/artifacts/)" >&2
  exit 1
fi

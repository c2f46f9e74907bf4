# Shared by the check scripts (test-images.sh, test-packaging.sh, test-scripts.sh;
# sourced, not run): counts checks and prints one line per check.
#
# `step NAME COMMAND...` runs one check with its output in a log under $TMP (which the
# sourcing script creates), shown only when it fails. `checks_summary LABEL` prints the
# failures and `LABEL: N passed, M failed`, and returns non-zero if any failed.

passed=0
failed=0
failures=()

step() {
  local name="$1"; shift
  local log="$TMP/step-$((passed + failed)).log"
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok   - $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "FAIL - $name"
    sed 's/^/       /' "$log" | tail -n 60
  fi
}

checks_summary() {
  echo
  if ((failed)); then
    printf 'failed: %s\n' "${failures[@]}"
  fi
  echo "$1: $passed passed, $failed failed"
  ((failed == 0))
}

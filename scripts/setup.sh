#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (idempotent):
# Prometheus + promtool, headless Chromium, the Python test dependencies (including the
# real PyPI objectstore client), and helm + kubectl into ./tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# The auth tests make Ed25519 key pairs at test time with `openssl genpkey`.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "setup: pip install -r requirements-test.txt"
python3 -m pip install -q --disable-pip-version-check -r requirements-test.txt

if [ -f scripts/setup-packaging-tools.sh ]; then
  bash scripts/setup-packaging-tools.sh
fi

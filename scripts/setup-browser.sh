#!/usr/bin/env bash
# The browser tests' tools: Debian's Chromium and ChromeDriver, and selenium in the project venv.
# Idempotent. Needs root (or sudo) for apt the first time; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CHESTX_VENV:-.venv}"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
if ! "$VENV/bin/python" -c "import selenium" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --no-cache-dir "selenium>=4.20,<5"
fi
echo "browser tests: $(chromium --version 2>/dev/null | head -1), selenium $("$VENV/bin/python" -c 'import selenium; print(selenium.__version__)')"

#!/usr/bin/env bash
# Ray (and pytest) in the project venv, for the Ray driver in deploy/ray and its test. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CHESTX_VENV:-.venv}"
if ! "$VENV/bin/python" -c "import ray, pytest" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --no-cache-dir "ray>=2.40" "pytest>=8"
fi
echo "ray tests: ray $("$VENV/bin/python" -c 'import ray; print(ray.__version__)')"

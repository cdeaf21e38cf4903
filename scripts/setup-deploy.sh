#!/usr/bin/env bash
# What the deploy/ tests need: Ray and pytest in the project venv (the Ray driver and its test on a
# local cluster) and Debian's shellcheck (the Slurm templates); and GNU time for the fault suite.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CHESTX_VENV:-.venv}"
# GNU time measures each process's peak memory in scripts/fault-suite.py.
if ! command -v shellcheck >/dev/null 2>&1 || [ ! -x /usr/bin/time ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends shellcheck time >/dev/null
fi
if ! "$VENV/bin/python" -c "import ray, pytest, yaml" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --no-cache-dir "ray>=2.40" "pytest>=8" pyyaml
fi
echo "deploy tests: ray $("$VENV/bin/python" -c 'import ray; print(ray.__version__)'), $(shellcheck --version | sed -n 2p)"

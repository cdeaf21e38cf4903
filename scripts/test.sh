#!/usr/bin/env bash
# The project's test command: set up the venv (PyTorch 2.11 for libtorch) if needed, then run every
# test of the workspace. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
# shellcheck disable=SC1091
source scripts/env.sh
# Where /dev/null is a plain file (seen on a CI machine), what a step discarded would be read back as
# the stdin of the next (cargo's rustc probe, tests that give a child no input): keep it empty.
keep_null_empty() { [ -c /dev/null ] || : > /dev/null; }
keep_null_empty
cargo test --workspace "$@"
# deploy/: the Ray driver (on a local Ray cluster) and the Slurm and Kubernetes templates' exact
# commands, against the binary just built. CI sets CHESTX_RAY_TESTS=1 (scripts/setup-deploy.sh
# installs what they need); elsewhere they run when Ray is there.
VENV="${CHESTX_VENV:-.venv}"
if [ "${CHESTX_RAY_TESTS:-}" = 1 ] || "$VENV/bin/python" -c "import ray, pytest" 2>/dev/null; then
  keep_null_empty
  CHESTX_BIN="$PWD/target/debug/chestx" "$VENV/bin/python" -m pytest -q -p no:cacheprovider deploy
else
  echo "SKIP deploy/: Ray is not installed (scripts/setup-deploy.sh installs it)"
fi
# The Python package (python/) against the CLI on real data. CI sets CHESTX_PYTHON_TESTS=1 (and
# installs the package with scripts/setup-python.sh); elsewhere it runs when the package is installed.
if [ "${CHESTX_PYTHON_TESTS:-}" = 1 ] || "$VENV/bin/python" -c "import chestx" 2>/dev/null; then
  keep_null_empty
  CHESTX_BIN="$PWD/target/debug/chestx" "$VENV/bin/python" -m pytest -q -p no:cacheprovider python/tests
else
  echo "SKIP python/tests: the package is not installed (scripts/setup-python.sh installs it)"
fi
# Published models (torchxrayvision, CheXNet) imported by chestx against their own libraries. CI sets
# CHESTX_INTEROP_TESTS=1 (scripts/setup-interop.sh installs them); elsewhere they run when present.
if [ "${CHESTX_INTEROP_TESTS:-}" = 1 ] || "$VENV/bin/python" -c "import torchxrayvision, pytest" 2>/dev/null; then
  keep_null_empty
  CHESTX_BIN="$PWD/target/debug/chestx" "$VENV/bin/python" -m pytest -q -p no:cacheprovider interop
else
  echo "SKIP interop/: torchxrayvision is not installed (scripts/setup-interop.sh installs it)"
fi
# Issue 18's bad inputs and faults across every command, with each process's peak memory against a
# bound (GNU time); part of the minutes-long tier that CI turns on.
if [ "${CHESTX_SLOW_TESTS:-}" = 1 ]; then
  keep_null_empty
  python3 scripts/fault-suite.py --bin target/debug
else
  echo "SKIP scripts/fault-suite.py: set CHESTX_SLOW_TESTS=1"
fi

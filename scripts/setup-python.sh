#!/usr/bin/env bash
# The Python package (python/: PyO3 + maturin, abi3) built and installed into the project venv, with
# what its tests use. Idempotent: pip rebuilds only when the sources changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CHESTX_VENV:-.venv}"
"$VENV/bin/pip" install --quiet "pytest>=8" pandas pillow
"$VENV/bin/pip" install --quiet ./python
"$VENV/bin/python" -c "import chestx; print('python package: chestx', chestx.__version__)"

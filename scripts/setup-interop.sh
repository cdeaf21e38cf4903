#!/usr/bin/env bash
# What interop/ needs: the published models' own libraries in the project venv — torchxrayvision
# (with scikit-image, which its resize uses) and pydicom (its DICOM reader) — so that chestx's
# import of their models is checked against them. Idempotent. Nothing here downloads weights.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CHESTX_VENV:-.venv}"
if ! "$VENV/bin/python" -c "import torchxrayvision, skimage, pydicom, pytest" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --no-cache-dir "torchxrayvision>=1.3" scikit-image pydicom "pytest>=8"
fi
"$VENV/bin/python" -c "import torchxrayvision as x, skimage, pydicom; print('interop: torchxrayvision', x.__version__, 'scikit-image', skimage.__version__, 'pydicom', pydicom.__version__)"

#!/usr/bin/env bash
# Project-local Python environment with PyTorch 2.11 (the libtorch that tch 0.24 links against, and the
# version on the GPU machine) plus torchvision for the parity and benchmark reference scripts; and
# CMake, which the build needs for CharLS (JPEG-LS).
# Idempotent: does nothing when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CHESTX_VENV:-.venv}"
# CMake builds CharLS, the JPEG-LS codec dicom-pixeldata links for DICOM JPEG-LS transfer syntaxes.
if ! command -v cmake >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends cmake >/dev/null
fi
TORCH="2.11.0"
TORCHVISION="0.26.0"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if "$VENV/bin/python" - <<PY 2>/dev/null
import torch, torchvision, PIL, numpy
assert torch.__version__.split('+')[0] == "$TORCH", torch.__version__
assert torchvision.__version__.split('+')[0] == "$TORCHVISION", torchvision.__version__
PY
then
  exit 0
fi
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet --no-cache-dir "torch==$TORCH" "torchvision==$TORCHVISION" numpy pillow safetensors
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'at', torch.__path__[0])"

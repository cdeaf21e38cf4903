# Source me: puts the project venv's python (with torch 2.11) first on PATH and tells tch to link
# against it. Run scripts/setup-venv.sh first.
_chestx_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="${CHESTX_VENV:-$_chestx_root/.venv}/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
_torch_lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null || true)"
if [ -n "$_torch_lib" ]; then
  export LD_LIBRARY_PATH="$_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
unset _chestx_root _torch_lib

#!/usr/bin/env bash
# The project's test command: set up the venv (PyTorch 2.11 for libtorch) if needed, then run every
# test of the workspace. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
# shellcheck disable=SC1091
source scripts/env.sh
cargo test --workspace "$@"

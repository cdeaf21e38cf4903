#!/usr/bin/env bash
# The GPU check, run once on the device machine (it has PyTorch 2.11 and no Rust): the chestx binaries
# built on the CPU machine (chestx, chestx-torch, chestx-bench), linked against that machine's
# libtorch, next to PyTorch there.
#   scripts/gpu-check.sh OUT_DIR [BINARY_DIR] [NIH_PNG_DIR]
# (GPU_CHECK_ONLY=REGEX runs only the steps whose names match.)
# Steps, most important first, each with its own time limit; none starts past a deadline, and the
# outputs so far are packed into OUT_DIR/gpu.tgz after every step (a device run returns few files):
# 1. bench model at 512 on CUDA, ResNet-50 batch 8, f32, against benches/model_pytorch.py (ABBA);
# 2. variants, one process each: our weight layouts, cuDNN's autotuner, PyTorch tuned by hand;
# 3. bench train at 512 on CUDA: NIH PNG decode + augment + step, against a DataLoader script;
# 4. the phantom demo trained and evaluated on CUDA, then the same checkpoint evaluated on the CPU
#    (the two evaluations must agree);
# 5. bench model at 224.
set -uo pipefail
FINAL="${1:-gpu-out}"
BIN="${2:-target/release}"
B="$BIN/chestx"
BENCH="$BIN/chestx-bench"
PNGS="${3:-}"
DEADLINE="${GPU_CHECK_DEADLINE:-470}"
mkdir -p "$FINAL"
OUT=$(mktemp -d)
T="$OUT/gpu.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$T"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'torchvision', torchvision.__version__)" 2>&1 | tee -a "$T"
nproc | sed 's/^/cores /' | tee -a "$T"
TL=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ldd "$BIN/chestx-torch" | grep -E "not found|torch" | tee -a "$T"
step() { # name, limit, command...
  local name=$1 limit=$2
  shift 2
  if [ -n "${GPU_CHECK_ONLY:-}" ] && ! [[ $name =~ $GPU_CHECK_ONLY ]]; then
    return
  fi
  if [ "$SECONDS" -gt "$DEADLINE" ]; then
    echo "skipped $name (past ${DEADLINE} s)" | tee -a "$T"
    return
  fi
  echo "== $name" | tee -a "$T"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  echo "rc=$? $name $((SECONDS - t0)) s" | tee -a "$T"
  tr '\r' '\n' < "$OUT/$name.txt" | grep -vE '^\s*$' | grep -v "^epoch [0-9]* \[" | tail -8
  tar czf "$FINAL/gpu.tgz" -C "$OUT" .
}
M=(model --device cuda --arch resnet50 --batch 8 --torch-threads 16 --python python3)
S512=(--input 512 --steps 40 --warmup 10)
P=(python3 benches/model_pytorch.py --device cuda --batch 8 --threads 16 --input 512 --steps 40 --warmup 10)
step model-512 120 "$BENCH" "${M[@]}" "${S512[@]}" --rounds 2
# Our defaults are NHWC weights to train and NCHW to infer on a GPU; the other way round:
step ours-512-other-layouts 45 "$BENCH" "${M[@]}" "${S512[@]}" --rust-only --layout nchw --infer-layout nhwc
step torch-512-channels-last 45 "${P[@]}" --channels-last
if [ -n "$PNGS" ]; then
  step train-512 90 "$BENCH" train --device cuda --images "$PNGS" --input 512 --batch 8 --steps 40 \
    --rounds 2 --torch-threads 16 --python python3
fi
step demo-cuda 150 "$B" demo --quick --device cuda -o /tmp/demo
cp /tmp/demo/run/metrics.csv "$OUT/demo-metrics.csv" 2>/dev/null
cp /tmp/demo/run/eval-test/results.json "$OUT/eval-cuda.json" 2>/dev/null
cp /tmp/demo/run/eval-test/roc.png "$OUT/roc-cuda.png" 2>/dev/null
cp "$(ls /tmp/demo/run/eval-test/overlays/*.png 2>/dev/null | head -1)" "$OUT/overlay-cuda.png" 2>/dev/null
step eval-cpu 90 "$B" eval --run /tmp/demo/run --device cpu -o /tmp/eval-cpu --bootstrap 500 \
  --overlays 0
cp /tmp/eval-cpu/results.json "$OUT/eval-cpu.json" 2>/dev/null
step ours-512-cudnn-bench 45 "$BENCH" "${M[@]}" "${S512[@]}" --rust-only --cudnn-benchmark
step torch-512-cudnn-bench 45 "${P[@]}" --cudnn-benchmark
step torch-512-channels-last-cudnn-bench 45 "${P[@]}" --channels-last --cudnn-benchmark
step model-224 60 "$BENCH" "${M[@]}" --input 224 --steps 60 --warmup 10 --rounds 1
echo "done in $SECONDS s" | tee -a "$T"
tar czf "$FINAL/gpu.tgz" -C "$OUT" .

#!/usr/bin/env bash
# One short GPU check (the device machine has PyTorch 2.11 and no Rust): run the binary built on the
# CPU machine against that machine's libtorch. Usage: scripts/gpu-check.sh OUT_DIR
set -uo pipefail
OUT="${1:-gpu-out}"
mkdir -p "$OUT"
B=target/release/chestx
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
python3 -c "import torchvision; print('torchvision', torchvision.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
TL=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TL:$PWD/target/gpu-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for size in 512 224; do
  timeout 150 $B bench model --device cuda --input $size --batch 8 --steps 40 --warmup 8 --rounds 1 --torch-threads 16 --python python3 2>&1 | tee "$OUT/bench-model-$size.txt"
done
# training check done in the first run
: timeout 60 $B synth -o /tmp/ph --n 2000 --size 256 --procedural 100 --seed 1 2>&1 | tail -1
: timeout 150 $B train --dataset /tmp/ph --out /tmp/run --arch resnet18 --width 16 --output-stride 16 --transition-dim 128 \
  --input 256 --batch 32 --epochs 4 --lr 1e-3 --device cuda 2>&1 | tr '\r' '\n' | grep -vE '^\s*$' | tail -8 | tee "$OUT/train-cuda.txt"

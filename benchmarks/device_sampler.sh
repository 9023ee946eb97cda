#!/usr/bin/env bash
# One-shot sampler benchmark for a lent GPU (under 5 minutes): a Llama-3.2-1B-shaped model in
# bf16 with random weights, batch 1, 16 and 64, beside HF generate, with % of the HBM roofline
# (weights + KV cache read per decode step over measured copy bandwidth).
# Usage (repo root, on the GPU machine): bash benchmarks/device_sampler.sh [OUT_DIR]
set -euo pipefail
out=${1:-${OUT:-.}}
if [ -d .whl ]; then  # wheels the GPU image lacks, carried from the dev machine
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.85
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 benchmarks/sampler.py --model llama3.2-1b --random-init --dtype bfloat16 \
  --batches 1 16 64 --new 128 --roofline 2>&1 | tee "$out/device_sampler.log"
cp BENCHMARKS.md "$out/BENCHMARKS.device_sampler.md"

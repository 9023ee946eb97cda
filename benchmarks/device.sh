#!/usr/bin/env bash
# One-shot benchmarks for a lent GPU (under 8 minutes): a Llama-3.2-1B-shaped model in bf16 with
# random weights. Sampler: tokens/s and % of the HBM roofline at batch 1, 16 and 64 beside HF
# generate (benchmarks/device_sampler.sh). Train step: GRPO tokens/s and MFU against a bf16
# matmul peak measured in the same run. Logs and the BENCHMARKS.md entries go to OUT_DIR.
# Usage (repo root, on the GPU machine): bash benchmarks/device.sh [OUT_DIR]
set -euo pipefail
out=${1:-${OUT:-.}}
mkdir -p "$out"
start=$SECONDS
stamp() { echo "[device.sh +$((SECONDS - start))s] $*"; }

stamp "sampler (bounded to 240 s)"
# device_sampler.sh installs the carried wheels to /tmp/site and copies BENCHMARKS.md to $out.
timeout 240 bash benchmarks/device_sampler.sh "$out" || stamp "sampler part failed or timed out (rc=$?)"

export PYTHONPATH=$PWD:/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.85
stamp "train step, 1B shape, bf16 compute / f32 master weights (bounded to 140 s)"
timeout 140 python3 benchmarks/train_step.py --model llama3.2-1b --random-init --dtype bfloat16 \
  --batch 32 --length 512 --microbatches 4 --steps 3 2>&1 | tee "$out/device_train_step.log" \
  || stamp "train step failed or timed out"
stamp "train step, beta=0.04 (reference forward counted; bounded to 80 s)"
timeout 80 python3 benchmarks/train_step.py --model llama3.2-1b --random-init --dtype bfloat16 \
  --batch 32 --length 512 --microbatches 4 --steps 2 --beta 0.04 2>&1 \
  | tee "$out/device_train_step_beta.log" || stamp "train step (beta) failed or timed out"
cp BENCHMARKS.md "$out/BENCHMARKS.device.md"
stamp "done"

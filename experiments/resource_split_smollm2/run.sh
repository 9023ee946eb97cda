#!/bin/bash
# The learning demonstration of EXPERIMENTS.md: configs/resource_split.py with seeds 0 and 1, each
# trained, then evaluated (greedy, 200 held-out games, the trained export against the base model),
# then the judge-limited baseline: configs/default.py (deliberation, the embedded judge), shorter.
# The committed files are copied out of WORK, which holds the full run folders.
#   bash experiments/resource_split_smollm2/run.sh [WORK]     (about 2 hours on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-runs/experiments}
HERE=experiments/resource_split_smollm2
for seed in 0 1; do
  run="$WORK/resource_split_seed$seed"
  python -m negojax.main --config=configs/resource_split.py --config.workdir="$run" --config.seed=$seed
  python -m negojax.main --config=configs/resource_split.py --config.workdir="$run" --config.seed=$seed \
    --config.mode=eval
  mkdir -p "$HERE/seed$seed"
  cp "$run/metrics.jsonl" "$run/eval_results.json" "$run/report.md" "$HERE/seed$seed/"
done
run="$WORK/deliberation_seed0"
flags=(--config=configs/default.py --config.workdir="$run" --config.seed=0 --config.train.steps=6
       --config.train.checkpoint_every=6)
python -m negojax.main "${flags[@]}"
python -m negojax.main "${flags[@]}" --config.mode=eval --config.eval.num_tasks=100 \
  "--config.eval.decodings=('greedy',)" --config.eval.open_ended_tasks=0 \
  --config.eval.capability_prompts=0 --config.eval.reasoning_problems=0 \
  --config.eval.calibration_samples=0
mkdir -p "$HERE/deliberation_seed0"
cp "$run/metrics.jsonl" "$run/eval_results.json" "$run/report.md" "$HERE/deliberation_seed0/"
python "$HERE/curves.py"

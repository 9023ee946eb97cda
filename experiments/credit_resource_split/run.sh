#!/bin/bash
# The credit comparison of EXPERIMENTS.md: configs/resource_split.py (SmolLM2-135M self-play,
# policy_seats=all, sum welfare) for 10 GRPO steps with rl.credit=dialogue and with rl.credit=turn
# (per-turn returns shaped by the welfare of the proposal on the table), the same seed, then the
# turn-credit export against the dialogue-credit export on 200 held-out games (greedy, paired).
# Then dynamic sampling beside them: dialogue credit with rl.skip_zero_advantage_groups and 8
# oversampled prompts, 6 steps. The committed files are copied out of WORK, which holds the full
# run folders.
#   bash experiments/credit_resource_split/run.sh [WORK]     (about 75 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-runs/experiments}
HERE=experiments/credit_resource_split
steps=(--config=configs/resource_split.py --config.seed=0 --config.train.steps=10
       --config.train.checkpoint_every=10)
for credit in dialogue turn; do
  run="$WORK/credit_$credit"
  python -m negojax.main "${steps[@]}" --config.workdir="$run" --config.rl.credit=$credit
  mkdir -p "$HERE/$credit"
  cp "$run/metrics.jsonl" "$HERE/$credit/"
done
run="$WORK/credit_turn"
python -m negojax.main "${steps[@]}" --config.workdir="$run" --config.rl.credit=turn \
  --config.mode=eval --config.eval.trained_path="$run/export" \
  --config.eval.baseline_path="$WORK/credit_dialogue/export"
cp "$run/eval_results.json" "$run/report.md" "$HERE/"
run="$WORK/dynamic"
python -m negojax.main --config=configs/resource_split.py --config.seed=0 --config.train.steps=6 \
  --config.train.checkpoint_every=6 --config.workdir="$run" \
  --config.rl.skip_zero_advantage_groups=True --config.rl.oversample_prompts=8
mkdir -p "$HERE/dynamic"
cp "$run/metrics.jsonl" "$HERE/dynamic/"
python "$HERE/curves.py"

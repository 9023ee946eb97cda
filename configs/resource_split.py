"""resource_split on a laptop CPU with the embedded SmolLM2-135M-Instruct: a reward computed, not
judged (negojax.environments.resource_split). What this setting's committed run learned is the
action format and to agree on "seat 0 takes the whole pool" (EXPERIMENTS.md section 1, read
against the reference policies the evaluation reports); a setting that learns good deals is
issue 33's open work.

Two parties divide a pool of books, hats and balls, each knowing only its own points; the policy
plays and trains both seats (rollout.policy_seats all, opponent live: self-play). A deal earns its sum
welfare, normalised by the best deal; no deal earns 0. Sum welfare, not Nash: the untrained model's
only deals give one party everything, which has a Nash welfare of 0, so under Nash every reward
of the first steps is 0 and GRPO has nothing to learn from (EXPERIMENTS.md).

8 prompts x G 4 dialogues of 2 turns of up to 48 tokens per step, full fine-tuning at lr 2e-5;
20 steps take about 35 minutes on 2 CPU cores (about 100 s a step: 40 s of rollout, 60 s of
update). Then mode=eval compares the trained export with the base model on 200 held-out games
(greedy), with bootstrap intervals:

  python -m negojax.main --config=configs/resource_split.py
  python -m negojax.main --config=configs/resource_split.py --config.mode=eval
"""
from negojax.run.config import base_config


def get_config():
    c = base_config()
    c.workdir = "runs/resource_split"
    c.model.path = "default"
    c.env.update(name="resource_split", welfare="sum", parties=(2,))
    c.judge.update(kind="local", path="policy")  # built, never asked: the reward is computed
    c.rollout.update(prompts_per_step=8, group_size=4, max_turns=2, max_new_tokens=48,
                     context_turns=2, temperature=0.5, top_p=0.95, opponent="live",
                     policy_seats="all")
    c.rl.microbatches = 8
    c.optim.update(lr=2e-5, warmup_steps=0, schedule="constant")
    c.train.update(steps=20, checkpoint_every=10, keep_checkpoints=1, eval_every=0)
    c.eval.update(num_tasks=200, decodings=("greedy",), open_ended_tasks=0, capability_prompts=0,
                  reasoning_problems=0, calibration_samples=0, n_resamples=1000)
    c.lock()
    return c

"""The embedded default: SmolLM2-135M-Instruct on CPU, as policy and as local judge.

A few GRPO steps of 2 prompts x G 4, one round of 48-token turns (every party speaks once, so
3- and 4-party tasks can agree too); finishes in 8-10 minutes on 2 CPU cores and leaves a
checkpoint, metrics, transcripts (JSONL and HTML), the report and the exported model in the
workdir.

  python -m negojax.main --config=configs/default.py
"""
from negojax.run.config import base_config


def get_config():
    c = base_config()
    c.workdir = "runs/default"
    c.model.path = "default"
    c.judge.kind = "local"
    c.judge.path = "policy"  # the default model, frozen at its initial weights
    # SmolLM2-135M as judge leans to "no" (P(yes) measured 0.23-0.34, tests/rewards/test_local_judge.py):
    # at the method's 0.5 nothing ever agrees and every reward is 0, so the threshold sits inside
    # that range.
    c.rollout.update(prompts_per_step=2, group_size=4, max_rounds=1, max_new_tokens=48,
                     final_max_new_tokens=96, context_turns=2, agreement_threshold=0.3)
    # The packed train batch (4-8 rows of 512-768 tokens here) runs in 8 microbatches: the
    # backward pass holds about one row's activations at a time (a single microbatch of the
    # unpacked batch needed ~20 GB).
    c.rl.microbatches = 8
    c.optim.update(lr=1e-5, warmup_steps=0, schedule="constant")
    c.train.update(steps=3, checkpoint_every=1, keep_checkpoints=2, eval_every=0)
    # mode=eval on CPU: a small slice of the held-out sets.
    c.eval.update(num_tasks=8, open_ended_tasks=8, capability_prompts=8, reasoning_problems=8,
                  answer_max_new_tokens=64, n_resamples=200)
    c.lock()
    return c

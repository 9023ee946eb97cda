"""A random tiny model with the SmolLM2 tokenizer, for tests: seconds per step on CPU.

The architecture is SmolLM2's with tiny dimensions and random weights; the same tiny model is the
judge, so rewards are arbitrary but deterministic, which is what resume tests need.
"""
from negojax.run.config import base_config


def get_config():
    c = base_config()
    c.workdir = "runs/tiny_test"
    c.model.path = "default"
    c.model.random_init = True
    c.model.overrides.update(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                             num_kv_heads=2, head_dim=8)
    c.judge.kind = "local"
    c.judge.path = "policy"  # the initial policy weights judge (no second random model)
    # One round: a 2-party dialogue keeps its 2 turns and every party of a larger task speaks.
    c.rollout.update(prompts_per_step=2, group_size=2, max_rounds=1, max_new_tokens=8,
                     final_max_new_tokens=8, context_turns=2, agreement_threshold=0.3)
    c.optim.update(lr=1e-3, warmup_steps=0, schedule="constant")
    c.rl.logprob_chunk = 32
    c.train.update(steps=2, checkpoint_every=1, keep_checkpoints=3, eval_every=0,
                   quick_eval_tasks=2)
    c.eval.update(num_tasks=2, open_ended_tasks=2, capability_prompts=2, reasoning_problems=2,
                  answer_max_new_tokens=8, n_resamples=50)
    c.chat.max_new_tokens = 8
    c.lock()
    return c

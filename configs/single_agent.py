"""The paper's single-agent baseline on the method's machine (configs/tpu_v4.py: Qwen3-14B with
LoRA r64 on a Cloud TPU v4-64 slice): self-rewarding GRPO on the same Collective-Agency reward.

What changes from configs/tpu_v4.py, and why:
  rollout.setting single_agent: no dialogue; the policy answers each dilemma alone with every
    persona's view in its prompt (negojax.negotiation.single_agent), and GRPO trains on the
    answer's tokens.
  judge local "self": self-rewarding; the policy as it trains scores its own answers for CA, every
    step with that step's weights (LoRA adapters included), with the rubric that scores the
    negotiation's final solutions. judge.path=policy judges with the initial weights instead.
  rl.beta 0.04: the baseline's KL penalty against the initial policy (the method removed it).
  batch 32 = 8 prompts x G 4 (8 prompts split over the slice's 8 hosts).
  rollout.temperature 1.0, top_p 1.0: the baseline's sampling; the answer runs up to
    final_max_new_tokens (384), a final solution's length.
  train.steps 2150, as reported.
The quick evaluation (train.eval_every) still negotiates: it measures how the single-agent
model does in the dialogue it was not trained for.

  NEGOJAX_CONFIG=configs/single_agent.py launch/run.sh
"""
import os

from negojax.run.config import load_config_file


def get_config():
    c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tpu_v4.py"))
    c.workdir = "gs://YOUR_BUCKET/negojax/qwen3-14b-single-agent"
    c.rollout.update(setting="single_agent", prompts_per_step=8, group_size=4, temperature=1.0,
                     top_p=1.0, final_max_new_tokens=384)
    c.judge.update(kind="local", path="self")
    c.rl.beta = 0.04
    c.train.steps = 2150
    return c

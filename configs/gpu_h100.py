"""One NVIDIA H100 (80 GB): Qwen3-1.7B, full fine-tuning in bf16 compute with f32 master weights.

Policy and judge are the same base model on the one GPU; point judge.kind=http at a served judge
(e.g. vLLM with a larger model) for real CA scores:
  python -m negojax.main --config=configs/gpu_h100.py --config.model.path=/models/Qwen3-1.7B \
      --config.judge.kind=http --config.judge.base_url=http://127.0.0.1:8000/v1 \
      --config.judge.model=Qwen/Qwen3-32B

Memory: 1.7B params x (4 B master + 4 B grad + 8 B Adam) = 27 GB, KV cache for 64 rows x 2K
tokens x 28 layers x 2 x 8 kv heads x 128 x 2 B = 15 GB, activations per microbatch of 8 rows x
2.5K tokens well under the remaining 35 GB.
"""
from negojax.run.config import base_config


def get_config():
    c = base_config()
    c.workdir = "runs/gpu_h100"
    c.model.update(path="/models/Qwen3-1.7B", dtype="bfloat16", param_dtype="float32")
    c.judge.update(kind="local", path="policy")
    c.mesh.update(data=1, fsdp=1, tensor=1)
    c.rollout.update(prompts_per_step=8, group_size=8, max_turns=7, context_turns=2,
                     max_new_tokens=256, final_max_new_tokens=384, temperature=0.7, top_p=0.95,
                     final_temperature=0.1, final_top_p=0.95)
    c.rl.update(loss_aggregation="token_mean", beta=0.0, microbatches=8, logprob_chunk=256)
    c.optim.update(lr=1e-6, warmup_steps=10, schedule="cosine")
    c.train.update(steps=500, eval_every=50, checkpoint_every=25, keep_checkpoints=3,
                   quick_eval_tasks=16)
    c.lock()
    return c

"""The method (configs/tpu_v4.py: Qwen3-14B, LoRA r64, G 8 x 16 prompts, 7 turns) on the smallest
Cloud TPU slice, a v4-8: one host with 4 chips of 32 GiB HBM, as fsdp 4, with QLoRA.

What changes from configs/tpu_v4.py, and why:
  lora.base_dtype nf4: the frozen base in 4-bit NormalFloat with one absmax per 64 weights,
    ~8.3 GB for Qwen3-14B's projections beside 3.1 GB of bf16 embeddings, not 29.6 GB of bf16.
  mesh 1 x 4 x 1, one process (a v4-8 is one host), so no jax.distributed.
  rl.microbatches 32 (16 rows each, 4 per chip) with each layer rematerialised (rl.remat).
Train step, measured (benchmarks/memory.py, BENCHMARKS.md: XLA's compiled memory analysis on 4
fake devices, which counts the CPU's float32 copies of bf16 operands) for 512 packed rows x 1152
tokens: 19 GiB a chip of 32. Rollout: 128 rows x ~1.4K cache slots x 40 layers x 2 (k, v) x 8 kv
heads x 128 x 2 B = 29.5 GB of KV cache over 4 chips = 7.4 GB a chip, beside the 4.2 GB the
train state holds.

  python -m negojax.main --config=configs/tpu_v4_8.py --config.workdir=gs://bucket/run
"""
import os

from negojax.run.config import load_config_file


def get_config():
    c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tpu_v4.py"))
    c.workdir = "gs://YOUR_BUCKET/negojax/qwen3-14b-v4-8"
    c.distributed = False
    c.lora.base_dtype = "nf4"
    c.mesh.update(data=1, fsdp=4, tensor=1)
    c.rl.update(microbatches=32, remat=True)
    return c

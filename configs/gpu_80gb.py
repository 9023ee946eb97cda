"""The method (configs/tpu_v4.py: Qwen3-14B, LoRA r64, G 8 x 16 prompts, 7 turns) on one 80 GB
GPU (an A100 80GB or H100), with QLoRA; the method's own setup needed 96 GB.

What changes from configs/tpu_v4.py, and why:
  lora.base_dtype nf4: the frozen base in 4-bit NormalFloat with one absmax per 64 weights,
    ~8.3 GB for Qwen3-14B's projections beside 3.1 GB of bf16 embeddings, not 29.6 GB of bf16.
  mesh 1 x 1 x 1, one process, a local workdir.
  rl.microbatches 64 (8 rows each) with each layer rematerialised (rl.remat).
Train step, measured (benchmarks/memory.py, BENCHMARKS.md: XLA's compiled memory analysis on one
fake CPU device, which counts the CPU's float32 copies of bf16 operands) for 512 packed rows x
1152 tokens: 33 GiB of the GPU's 74.5 GiB. Rollout: 128 rows x ~1.4K cache slots x 40 layers x 2
(k, v) x 8 kv heads x 128 x 2 B = 29.5 GB of KV cache beside the 12 GB base.

  python -m negojax.main --config=configs/gpu_80gb.py --config.model.path=/models/Qwen3-14B
"""
import os

from negojax.run.config import load_config_file


def get_config():
    c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tpu_v4.py"))
    c.workdir = "runs/gpu_80gb"
    c.distributed = False
    c.model.path = "/models/Qwen3-14B"
    c.lora.base_dtype = "nf4"
    c.mesh.update(data=1, fsdp=1, tensor=1)
    c.rl.update(microbatches=64, remat=True)
    c.wandb.enabled = False
    return c

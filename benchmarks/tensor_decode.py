"""Decode tokens per second of the sampler on a mesh of fake CPU devices, per mesh shape.

A tiny random model over Qwen3's 151,936-token vocabulary (the unembedding and the sampling
dominate, as in a large model's per-token work beside its vocabulary), 16 rows decoding 8
tokens, stop tokens off; the first call compiles and is reported apart. Run it at two commits
to compare them (the sampler before and after gathering each row's vocabulary for sampling):

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/tensor_decode.py \\
      --meshes 1x8x1 1x4x2
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

from common import record, table, timed  # noqa: E402
from negojax.models import transformer  # noqa: E402
from negojax.models.config import PRESETS  # noqa: E402
from negojax.parallel.mesh import make_mesh  # noqa: E402
from negojax.parallel.sharding import LogicalRules  # noqa: E402
from negojax.sampling import SamplingParams, Session  # noqa: E402

TINY = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
            head_dim=16)


def decode_rate(mesh: str, rows: int, new: int, repeats: int) -> tuple[float, float]:
    sizes = dict(zip(("data", "fsdp", "tensor"), map(int, mesh.split("x"))))
    rules = LogicalRules(make_mesh(**sizes))
    config = PRESETS["qwen3-14b"].replace(**TINY)
    params = transformer.place_params(transformer.init_params(config), rules)
    prompt = list(range(100, 273))
    times = []
    for _ in range(repeats + 1):
        session = Session(params, config, rows, rules=rules, min_cache=256)
        session.extend([prompt] * rows)
        jax.block_until_ready(session.logits)
        _, seconds = timed(session.generate, new, SamplingParams(0.7, 0.95))
        times.append(seconds)
    return rows * new / min(times[1:]), times[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshes", nargs="+", default=["1x8x1", "1x4x2"])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--new", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = [[mesh, *decode_rate(mesh, args.rows, args.new, args.repeats)]
               for mesh in args.meshes]
    record(f"Decode on {len(jax.devices())} fake CPU devices: tiny Qwen3, V=151,936, "
           f"{args.rows} rows x {args.new} tokens, T=0.7 top-p 0.95",
           table(["mesh (data x fsdp x tensor)", "tok/s (best warm)", "first call s"], results))


if __name__ == "__main__":
    main()

"""Train-step memory per device from XLA's compiled memory analysis: no weights, abstract shapes.

The real step (negojax.rl.make_train_step) is lowered for ShapeDtypeStructs carrying the
shardings a run would give them (`train_state_shapes`) on a mesh of fake CPU devices of the
slice's size, and compiled; `memory_analysis()` then says, per device, how many bytes the
arguments (state and batch), the temporaries, and the outputs not aliased to donated inputs
take. A mesh is `name:data,fsdp,tensor` (v4-8: 4 chips as fsdp 4; v4-64: configs/tpu_v4.py's
1,8,4; one GPU: 1,1,1).

The batch is the trainer's packed batch (per-token advantages, packing ids, loss positions):
`--rows` rows of `--length` tokens with `--loss-tokens` unembedded positions each, split into
`--microbatches`. The CPU backend computes bf16 dots in float32, so its temporaries include
float32 copies of one layer's weights and activations a TPU or GPU keeps in bf16: an upper
bound on what those chips need.

  XLA_FLAGS=--xla_force_host_platform_device_count=32 python benchmarks/memory.py \\
      --model qwen3-14b --rank 64 --rows 512 --length 1152 --loss-tokens 256 \\
      --microbatches 64 --meshes v4-8:1,4,1 v4-64:1,8,4 gpu:1,1,1
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from common import record, table  # noqa: E402
from negojax.checkpoints import default_model_dir, load_hf_config  # noqa: E402
from negojax.models import lora  # noqa: E402
from negojax.models.config import preset  # noqa: E402
from negojax.models.transformer import init_params  # noqa: E402
from negojax.parallel.mesh import make_mesh  # noqa: E402
from negojax.parallel.sharding import LogicalRules  # noqa: E402
from negojax.rl.batch import TrainBatch  # noqa: E402
from negojax.rl.train_step import TrainHParams, make_train_step, train_state_shapes  # noqa: E402

GIB = 2 ** 30


def model_config(name: str):
    return load_hf_config(default_model_dir()) if name == "default" else preset(name)


def abstract_batch(rows: int, length: int, loss_tokens: int, rules) -> TrainBatch:
    sharding = rules.sharding(("act_batch",))
    s = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
    ints = {k: s((rows, length), jnp.int32) for k in ("tokens", "position_ids", "segment_ids",
                                                      "branch_ids")}
    return TrainBatch(**ints, loss_mask=s((rows, length), jnp.float32),
                      old_logp=s((rows, length), jnp.float32),
                      advantages=s((rows, length), jnp.float32),
                      loss_positions=s((rows, loss_tokens), jnp.int32))


def step_memory(config, storage: str, rank: int, mesh: tuple, hp: TrainHParams, rows: int,
                length: int, loss_tokens: int):
    """(argument, temp, output-not-aliased) bytes per device of one compiled step."""
    data, fsdp, tensor = mesh
    rules = LogicalRules(make_mesh(data, fsdp, tensor, devices=jax.devices()[:data * fsdp * tensor]))
    # The base as a run loads it: float32 for the float32 row, else in the compute dtype's
    # bf16, which the quantised formats start from.
    base_dtype = jnp.float32 if storage == "float32" else jnp.bfloat16
    params = jax.eval_shape(lambda: init_params(config.replace(param_dtype=base_dtype)))
    if rank:
        adapters = jax.eval_shape(lambda p: lora.init_lora(p, config, rank, 2.0 * rank)[0],
                                  params)
        trainable = {"layers": {"lora": adapters}}
        frozen = jax.eval_shape(lambda p: lora.freeze_base(p, storage), params)
        config = config.replace(lora_scale=2.0)
    else:
        trainable, frozen = params, {}
    state = train_state_shapes(trainable, frozen, hp, rules)
    batch = abstract_batch(rows, length, loss_tokens, rules)
    m = make_train_step(hp, config, rules, state).lower(state, batch).compile().memory_analysis()
    return (m.argument_size_in_bytes, m.temp_size_in_bytes,
            m.output_size_in_bytes - m.alias_size_in_bytes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="'default' or a preset (qwen3-14b)")
    ap.add_argument("--storages", nargs="+", default=["float32", "bfloat16", "int8", "nf4"])
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank (0: full fine-tuning)")
    ap.add_argument("--dtype", default="bfloat16", help="compute and adapter dtype")
    ap.add_argument("--meshes", nargs="+", default=["cpu:1,1,1"])
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--length", type=int, default=768)
    ap.add_argument("--loss-tokens", type=int, default=64)
    ap.add_argument("--microbatches", type=int, default=8)
    ap.add_argument("--logprob-chunk", type=int, default=512)
    ap.add_argument("--remat", action="store_true", help="rematerialise each layer (rl.remat)")
    ap.add_argument("--budget-gib", type=float, nargs="*", default=[],
                    help="per-device goal of each mesh, in the order of --meshes")
    args = ap.parse_args()

    dtype = jnp.dtype(args.dtype)
    config = model_config(args.model).replace(dtype=dtype, param_dtype=dtype)
    hp = TrainHParams(num_microbatches=args.microbatches, logprob_chunk=args.logprob_chunk,
                      remat=args.remat)
    budgets = dict(zip(args.meshes, args.budget_gib))
    rows = []
    for mesh_arg in args.meshes:
        name, sizes = mesh_arg.split(":")
        mesh = tuple(int(v) for v in sizes.split(","))
        for storage in args.storages if args.rank else ["full fine-tune"]:
            argument, temp, output = step_memory(config, storage, args.rank, mesh, hp, args.rows,
                                                 args.length, args.loss_tokens)
            total = argument + temp + output
            goal = budgets.get(mesh_arg)
            rows.append([name, "x".join(map(str, mesh)), storage, f"{argument / GIB:.2f}",
                         f"{temp / GIB:.2f}", f"{output / GIB:.2f}", f"**{total / GIB:.2f}**",
                         "" if goal is None else f"{goal:g} ({'within' if total <= goal * GIB else 'OVER'})"])
            print(rows[-1], flush=True)
    body = table(["mesh", "data x fsdp x tensor", "base", "arguments GiB", "temp GiB",
                  "outputs (not aliased) GiB", "total GiB / device", "goal GiB"], rows)
    trained = (f"LoRA rank {args.rank} on {', '.join(lora.DEFAULT_TARGETS)}" if args.rank
               else "full fine-tuning")
    body += (f"\n\n{args.model}, {trained}, compute and trained weights {dtype.name} (Adam "
             f"moments float32); batch {args.rows} "
             f"packed rows x {args.length} tokens, {args.loss_tokens} loss positions a row, "
             f"{args.microbatches} microbatches, log-prob chunk {args.logprob_chunk}, "
             f"{'each layer rematerialised' if args.remat else 'no layer remat'}; "
             "per device, from XLA's compiled memory analysis on fake CPU devices.")
    record(f"Train-step memory per device: {args.model}", body)


if __name__ == "__main__":
    main()

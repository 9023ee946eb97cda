"""GRPO train step throughput and model FLOPs utilisation (MFU) against a measured matmul peak.

Model FLOPs per step (useful work only; rematerialisation is not counted):
  N_layers = L * (D*Dh*(H + 2K) + H*Dh*D + 3*D*F)       layer matmul weights
  N_vocab  = D*V                                          the unembedding
  train  = tokens * (6 * N_layers + 12 * L * T * H * Dh) + loss_tokens * 6 * N_vocab
           forward + backward; the attention term is QK^T and PV over the full T x T square,
           which is what the model computes; the step unembeds only the loss positions, as the
           trainer's batches ask (loss_positions)
  ref    = tokens * (2 * N_layers + 4 * L * T * H * Dh) + loss_tokens * 2 * N_vocab, when beta > 0
  times num_inner_updates; tokens = B * (T - 1) positions (every position is forwarded and
  back-propagated), loss_tokens = B * --loss-tokens (the generated suffix of each row).
Peak: the best of several large square matmuls in the compute dtype, timed on the same device in
the same run. MFU = model FLOPs / step time / peak.

  python benchmarks/train_step.py                                   # SmolLM2 f32 on CPU
  python benchmarks/train_step.py --model llama3.2-1b --random-init --dtype bfloat16 \
      --batch 32 --length 512 --microbatches 4                      # the GPU shape (device.sh)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import negojax  # noqa: E402
from common import record, table  # noqa: E402
from negojax.parallel.mesh import make_mesh  # noqa: E402
from negojax.parallel.sharding import LogicalRules  # noqa: E402
from negojax.rl.batch import TrainBatch  # noqa: E402
from negojax.rl.train_step import (TrainHParams, init_train_state, make_train_step,  # noqa: E402
                                   place_batch)


def step_model_flops(config, batch: int, length: int, loss_tokens: int) -> tuple[float, float]:
    """(training FLOPs, reference-forward FLOPs) of one step, by the formula in the docstring."""
    c = config
    n_layers = c.num_layers * (c.hidden_size * c.head_dim * (c.num_heads + 2 * c.num_kv_heads)
                               + c.num_heads * c.head_dim * c.hidden_size
                               + 3 * c.hidden_size * c.intermediate_size)
    n_vocab = c.hidden_size * c.vocab_size
    attention = c.num_layers * length * c.num_heads * c.head_dim
    tokens, trained = batch * (length - 1), batch * loss_tokens
    return (tokens * (6 * n_layers + 12 * attention) + trained * 6 * n_vocab,
            tokens * (2 * n_layers + 4 * attention) + trained * 2 * n_vocab)


def matmul_peak_flops(dtype, size: int, repeats: int = 5) -> float:
    """Best observed FLOP/s of an n x n x n matmul in `dtype` on the default device."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32).astype(dtype)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def synthetic_batch(rng, batch: int, length: int, vocab: int, loss_tokens: int) -> TrainBatch:
    """Random tokens; the last loss_tokens of each row are 'generated' (loss on them)."""
    mask = np.zeros((batch, length), np.float32)
    mask[:, length - loss_tokens:] = 1.0
    return TrainBatch(tokens=rng.integers(3, vocab, (batch, length)).astype(np.int32),
                      loss_mask=mask,
                      old_logp=np.where(mask > 0, -np.log(vocab), 0.0).astype(np.float32),
                      advantages=rng.standard_normal(batch).astype(np.float32)
                      ).with_loss_positions(loss_tokens)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--dtype", default="float32", help="compute dtype")
    ap.add_argument("--param-dtype", default="float32", help="master weights and Adam state")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--loss-tokens", type=int, default=0,
                    help="generated tokens per row (0: half the row)")
    ap.add_argument("--microbatches", type=int, default=1)
    ap.add_argument("--beta", type=float, default=0.0, help="> 0 adds the reference forward")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after the compiling one")
    ap.add_argument("--matmul-size", type=int, default=0, help="0: 8192 on GPU/TPU, 2048 on CPU")
    args = ap.parse_args()

    load = os.getloadavg()[0]
    rules = LogicalRules(make_mesh())
    model = negojax.load_model(args.model, dtype=args.dtype, param_dtype=args.param_dtype,
                               random_init=args.random_init, rules=rules)
    config = model.config
    hp = TrainHParams(beta=args.beta, num_microbatches=args.microbatches, warmup_steps=0)
    state = init_train_state(model.params, {}, hp, rules)
    del model  # the state holds the params; the step donates it
    step_fn = make_train_step(hp, config, rules, state)
    loss_tokens = args.loss_tokens or args.length // 2
    batch = place_batch(synthetic_batch(np.random.default_rng(0), args.batch, args.length,
                                        config.vocab_size, loss_tokens), rules)

    start = time.perf_counter()
    state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        state, metrics = step_fn(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    skipped = int(jax.device_get(metrics["skipped_updates"]))

    size = args.matmul_size or (2048 if jax.default_backend() == "cpu" else 8192)
    peak = matmul_peak_flops(config.dtype, size) * len(jax.devices())
    tokens = args.batch * (args.length - 1)
    train_f, ref_f = step_model_flops(config, args.batch, args.length, loss_tokens)
    flops = (train_f + (ref_f if args.beta > 0 else 0.0)) * hp.num_inner_updates
    achieved = flops / step_s
    rows = [[args.batch, args.length, args.microbatches, f"{args.beta:g}", f"{step_s:.3f}",
             f"{first - step_s:.1f}", tokens / step_s, f"{achieved / 1e12:.3f}",
             f"{peak / 1e12:.3f}", f"{100 * achieved / peak:.1f}%"]]
    body = table(["batch", "length", "microbatches", "beta", "step s (median)", "compile s",
                  "tokens/s", "model TFLOP/s", "matmul peak TFLOP/s", "MFU"], rows)
    body += (f"\n\nmodel FLOPs per step {flops / 1e12:.2f} TFLOP (formula in the script's "
             f"docstring; {loss_tokens} loss tokens per row are unembedded"
             f"{', reference forward included' if args.beta > 0 else ''}); peak from a "
             f"{size}^3 {jnp.dtype(config.dtype).name} matmul on the same device; compute "
             f"{jnp.dtype(config.dtype).name}, master weights {args.param_dtype}; "
             f"{args.steps} timed steps {', '.join(f'{t:.3f}' for t in times)} s; "
             f"skipped updates {skipped}; load average at start {load:.1f}.")
    record(f"Train step: {args.model} {args.dtype}, GRPO (AdamW, full fine-tune)", body)


if __name__ == "__main__":
    main()

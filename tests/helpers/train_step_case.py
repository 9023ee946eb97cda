"""A tiny model, batch and hyper-parameters shared by the train-step tests and their workers."""
from __future__ import annotations

import jax
import numpy as np

from negojax.models.config import ModelConfig
from negojax.models.transformer import init_params
from negojax.rl.batch import TrainBatch
from negojax.rl.train_step import TrainHParams, init_train_state, make_train_step

# Tied embeddings: the sharded step then unembeds through the vocab-sharded embedding table.
CONFIG = ModelConfig("qwen3", vocab_size=128, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8, tie_word_embeddings=True)
# Adam's first update is lr * g / (|g| + eps): with eps = 1e-8 a coordinate whose gradient is a
# near-cancelling sum amplifies summation-order rounding (mesh vs one device, 1 vs k microbatches)
# to ~lr * 1e-2. eps = 1e-6 keeps that below 1e-7 without changing what is compared.
HPARAMS = TrainHParams(learning_rate=1e-3, warmup_steps=0, total_steps=100, num_microbatches=2,
                       adam_eps=1e-6, logprob_chunk=16)
B, T = 16, 16


def make_batch(seed: int, rows: int = B, length: int = T) -> TrainBatch:
    rng = np.random.default_rng(seed)
    mask = np.zeros((rows, length), np.float32)
    starts = rng.integers(2, length // 2, rows)
    for b, s in enumerate(starts):
        mask[b, s:] = 1.0
    return TrainBatch(
        tokens=rng.integers(0, CONFIG.vocab_size, (rows, length)).astype(np.int32),
        loss_mask=mask,
        old_logp=(np.log(1.0 / CONFIG.vocab_size) + 0.3 * rng.normal(size=(rows, length))
                  ).astype(np.float32),
        advantages=rng.normal(size=rows).astype(np.float32))


def run_steps(rules, put_batch, num_steps: int = 2, hp: TrainHParams = HPARAMS):
    """Train from fixed init on batches 0..num_steps-1; returns (losses, full params on host).
    The batches carry loss_positions, as the trainer's do."""
    state = init_train_state(init_params(CONFIG, seed=0), {}, hp, rules)
    step = make_train_step(hp, CONFIG, rules, state)
    losses = []
    for i in range(num_steps):
        state, metrics = step(state, put_batch(make_batch(i).with_loss_positions(T)))
        losses.append(float(metrics["loss"]))
    return losses, state["trainable"]


def max_abs_diff(a, b) -> float:
    diffs = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
    return max(jax.tree.leaves(diffs))

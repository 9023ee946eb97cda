"""Sampling rules: greedy, temperature, top-k, top-p, applied in HF's order (T, then k, then p).

Which rules are active is static (it changes the program); their values are traced, so a run
that varies temperature or top-p between turns does not recompile.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature}: must be >= 0 (0 means greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p}: must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k}: must be >= 0 (0 disables top-k)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def mode(self) -> tuple:
        """The static part: which rules run."""
        return (self.greedy, self.top_k, self.top_p < 1.0)


def filtered_logits(logits, temperature, top_p, mode):
    """Logits [B, V] of the sampling distribution (masked entries are -inf)."""
    greedy, top_k, use_top_p = mode
    scaled = logits.astype(jnp.float32) / temperature
    if top_k:
        kth = jax.lax.top_k(scaled, top_k)[0][:, -1:]
        scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
    if use_top_p:
        ordered = jnp.sort(scaled, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(ordered, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        # The smallest logit still inside the nucleus; always keeps the top token.
        keep = mass_before < top_p
        threshold = jnp.min(jnp.where(keep, ordered, jnp.inf), axis=-1, keepdims=True)
        scaled = jnp.where(scaled < threshold, -jnp.inf, scaled)
    return scaled


def sample_tokens(logits, key, temperature, top_p, mode):
    """One token per row. Returns (tokens [B], logp under the sampling distribution [B],
    logp under the raw temperature-1 policy [B] — the latter is pi_old for GRPO)."""
    raw = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    if mode[0]:
        tokens = jnp.argmax(logits, axis=-1)
        sampled_logp = jnp.zeros(tokens.shape, jnp.float32)
    else:
        scaled = filtered_logits(logits, temperature, top_p, mode)
        tokens = jax.random.categorical(key, scaled, axis=-1)
        sampled_logp = jnp.take_along_axis(jax.nn.log_softmax(scaled, axis=-1),
                                           tokens[:, None], axis=-1)[:, 0]
    raw_logp = jnp.take_along_axis(raw, tokens[:, None], axis=-1)[:, 0]
    return tokens.astype(jnp.int32), sampled_logp, raw_logp

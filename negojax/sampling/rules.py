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


def _float_order_key(x):
    """int32 keys that order like the float32 values (so a bisection can run over floats)."""
    bits = jax.lax.bitcast_convert_type(x, jnp.int32)
    return jnp.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)


def _key_to_float(key):
    return jax.lax.bitcast_convert_type(jnp.where(key >= 0, key, key ^ 0x7FFFFFFF), jnp.float32)


def nucleus_threshold(scaled, top_p):
    """Per row [B, 1]: the smallest logit t with mass{logits > t} < top_p, so the nucleus is
    {logits >= t} (the top token always; ties at t all kept, as a sort would keep them).

    A 32-step bisection over the float bit patterns: exact, and O(V) per step instead of a
    sort over the vocabulary (a sort cost ~100x more than the rest of sampling on CPU)."""
    probs = jax.nn.softmax(scaled, axis=-1)
    finite = jnp.isfinite(scaled)
    lo = _float_order_key(jnp.min(jnp.where(finite, scaled, jnp.inf), axis=-1, keepdims=True))
    hi = _float_order_key(jnp.max(scaled, axis=-1, keepdims=True))

    def step(_, bounds):
        lo, hi = bounds
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2) without overflow
        inside = jnp.sum(jnp.where(scaled > _key_to_float(mid), probs, 0.0), axis=-1,
                         keepdims=True) < top_p
        return jnp.where(inside, lo, mid + 1), jnp.where(inside, mid, hi)

    _, hi = jax.lax.fori_loop(0, 32, step, (lo, hi))  # smallest key where inside
    return _key_to_float(hi)


def filtered_logits(logits, temperature, top_p, mode):
    """Logits [B, V] of the sampling distribution (masked entries are -inf)."""
    greedy, top_k, use_top_p = mode
    scaled = logits.astype(jnp.float32) / temperature
    if top_k:
        kth = jax.lax.top_k(scaled, top_k)[0][:, -1:]
        scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
    if use_top_p:
        scaled = jnp.where(scaled < nucleus_threshold(scaled, top_p), -jnp.inf, scaled)
    return scaled


def _uniforms(key, rows: int):
    """[rows, 1] uniforms from one key, or from one raw key per row (uint32 [rows, 2]): then a
    row's draw depends on its own key only, not on where in the batch it sits."""
    if key.ndim == 2:
        return jax.vmap(lambda k: jax.random.uniform(k, (1,)))(key)
    return jax.random.uniform(key, (rows, 1))


def _inverse_cdf(masked, key):
    """One draw per row from softmax(masked), by one uniform per row against the running mass
    (a Gumbel draw needs a random number per vocabulary entry: ~20x slower on CPU)."""
    probs = jax.nn.softmax(masked, axis=-1)
    mass = jnp.cumsum(probs, axis=-1)
    target = _uniforms(key, masked.shape[0]) * mass[:, -1:]
    return jnp.argmax(mass > target, axis=-1)


def sample_tokens(logits, key, temperature, top_p, mode):
    """One token per row; `key` is one key for the batch or one raw key per row. Returns
    (tokens [B], logp under the sampling distribution [B], logp under the raw temperature-1
    policy [B] — the latter is pi_old for GRPO)."""
    raw = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    if mode[0]:
        tokens = jnp.argmax(logits, axis=-1)
        sampled_logp = jnp.zeros(tokens.shape, jnp.float32)
    else:
        scaled = filtered_logits(logits, temperature, top_p, mode)
        tokens = _inverse_cdf(scaled, key)
        sampled_logp = jnp.take_along_axis(jax.nn.log_softmax(scaled, axis=-1),
                                           tokens[:, None], axis=-1)[:, 0]
    raw_logp = jnp.take_along_axis(raw, tokens[:, None], axis=-1)[:, 0]
    return tokens.astype(jnp.int32), sampled_logp, raw_logp

"""Group-relative advantages over rewards shaped [prompts, G] (and per slot, [prompts, G, slots]).

Every prompt is sampled G times; each sample's advantage is its reward against a baseline computed
from its own group only. Methods:

- ``grpo``:    (r - mean) / (std + eps).  ``std`` is the POPULATION std (ddof=0, like ``jnp.std``).
  TRL and verl use ``torch.std`` (Bessel-corrected, ddof=1); the two differ by the constant factor
  sqrt(G / (G - 1)) for full groups, which Adam largely absorbs. ddof=0 stays defined when a
  ``valid`` mask leaves a single sample in a group (its advantage is then 0, not 0/0).
- ``dr_grpo``: r - mean (Dr. GRPO drops the std division, which up-weights near-uniform groups).
- ``rloo``:    r - mean of the OTHER samples of the group (leave-one-out); a sample with no other
  in its group (the only valid one, or the only dialogue that reached a turn under per-turn
  credit) has no baseline: its advantage is its reward. The baseline never depends on the
  sample's own actions, so the estimate is unbiased, also when the policy decides when a dialogue
  stops (tests/rl/test_credit.py, a toy with its gradient in closed form); an advantage of 0
  there would drop the term whenever no other dialogue went as far.

``valid`` (same leading shape, bool or 0/1) drops samples, e.g. a judge failure: they are left out of
the group statistics and get advantage 0. All functions are pure jax.numpy and jit-friendly with
``method`` static.

Estimators register (``rl.advantage``, `ADVANTAGES`): an estimator is
``fn(rewards, weights, eps) -> advantages`` over rewards with the group along axis 1 (any trailing
axes get their own baseline) and 0/1 ``weights`` of the same shape saying which samples count;
samples of weight 0 get advantage 0 whatever it returns.
"""
from __future__ import annotations

import jax.numpy as jnp

from negojax.registry import Registry

ADVANTAGES = Registry("rl.advantage", {
    "grpo": "negojax.rl.advantages:grpo",
    "dr_grpo": "negojax.rl.advantages:dr_grpo",
    "rloo": "negojax.rl.advantages:rloo",
})
METHODS = ADVANTAGES.names()  # the built-ins


def _float(x) -> jnp.ndarray:
    x = jnp.asarray(x)
    return x.astype(jnp.result_type(x.dtype, jnp.float32))


def _valid_weights(rewards: jnp.ndarray, valid, name: str) -> jnp.ndarray:
    if valid is None:
        return jnp.ones_like(rewards)
    valid = jnp.asarray(valid)
    if valid.shape != rewards.shape:
        raise ValueError(f"{name}: valid has shape {valid.shape}, expected the rewards' shape {rewards.shape}")
    return valid.astype(rewards.dtype)


def _group_mean(rewards: jnp.ndarray, weights: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """(count, total, mean) of each group's counted samples, kept along axis 1."""
    count = weights.sum(axis=1, keepdims=True)
    total = (rewards * weights).sum(axis=1, keepdims=True)
    return count, total, total / jnp.maximum(count, 1.0)


def grpo(rewards: jnp.ndarray, weights: jnp.ndarray, eps: float) -> jnp.ndarray:
    count, _, mean = _group_mean(rewards, weights)
    var = (((rewards - mean) * weights) ** 2).sum(axis=1, keepdims=True) / jnp.maximum(count, 1.0)
    return (rewards - mean) / (jnp.sqrt(var) + eps)


def dr_grpo(rewards: jnp.ndarray, weights: jnp.ndarray, eps: float) -> jnp.ndarray:
    del eps
    return rewards - _group_mean(rewards, weights)[2]


def rloo(rewards: jnp.ndarray, weights: jnp.ndarray, eps: float) -> jnp.ndarray:
    del eps
    count, total, _ = _group_mean(rewards, weights)
    # Alone in its group, a sample's "others" sum to 0: its advantage is its reward.
    return rewards - (total - rewards * weights) / jnp.maximum(count - 1.0, 1.0)


def _group_advantages(rewards: jnp.ndarray, weights: jnp.ndarray, method: str, eps: float) -> jnp.ndarray:
    """Advantages with the group along axis 1 by the estimator `method` names."""
    return jnp.where(weights > 0, ADVANTAGES.get(method)(rewards, weights, eps), 0.0)


def advantages(rewards, method: str, eps: float = 1e-6, valid=None) -> jnp.ndarray:
    """Group-relative advantages for ``rewards`` [prompts, G]; returns the same shape.

    ``method``: one of ``grpo``, ``dr_grpo``, ``rloo`` (see the module docstring).
    ``valid``: optional [prompts, G] mask; dropped samples are excluded from the group's mean/std and
    get advantage 0.
    """
    rewards = _float(rewards)
    if rewards.ndim != 2:
        raise ValueError(f"advantages: rewards must be [prompts, G], got shape {rewards.shape}; "
                         "use slot_advantages for [prompts, G, slots]")
    return _group_advantages(rewards, _valid_weights(rewards, valid, "advantages"), method, eps)


def slot_advantages(rewards, method: str, eps: float = 1e-6, valid=None) -> jnp.ndarray:
    """A baseline per slot: ``rewards`` [prompts, G, slots] -> same shape, where a slot is a seat
    (role-conditioned baselines) or a turn (per-turn credit, negojax.rl.credit).

    Each slot of a prompt is its own group of G samples, so a seat's reward is compared only with
    the same seat's rewards in the other samples of that prompt. ``valid``: optional
    [prompts, G, slots]; a sample without that slot (a seat it did not train, a turn it never
    reached) is left out of the slot's statistics.
    """
    rewards = _float(rewards)
    if rewards.ndim != 3:
        raise ValueError(f"slot_advantages: rewards must be [prompts, G, slots], got shape {rewards.shape}")
    return _group_advantages(rewards, _valid_weights(rewards, valid, "slot_advantages"), method, eps)


def zero_advantage_fraction(rewards, valid=None) -> jnp.ndarray:
    """Share of (valid) samples whose group's (valid) rewards are all equal, i.e. carry no signal.

    ``rewards`` [prompts, G] (groups along axis 1). The method reports about 25% in training.
    """
    rewards = _float(rewards)
    if rewards.ndim != 2:
        raise ValueError(f"zero_advantage_fraction: rewards must be [prompts, G], got shape {rewards.shape}")
    weights = _valid_weights(rewards, valid, "zero_advantage_fraction")
    present = weights > 0
    high = jnp.where(present, rewards, -jnp.inf).max(axis=1)
    low = jnp.where(present, rewards, jnp.inf).min(axis=1)
    flat_group = high <= low  # also true for groups with one valid sample
    zero_samples = (weights.sum(axis=1) * flat_group).sum()
    return zero_samples / jnp.maximum(weights.sum(), 1.0)

"""GRPO policy loss: clipped importance ratio, optional dual clip, KL to a reference, aggregation.

Shapes: ``logp``, ``old_logp``, ``ref_logp`` and ``mask`` are per token [B, T]; ``advantages`` is per
sequence [B] and broadcasts over tokens, or per token [B, T] when a row packs several sequences
(then ``sequence_ids`` [B, T] tells a row's sequences apart for the sequence means). ``mask`` (bool
or 0/1) marks the tokens that are trained (the policy's own dialogue tokens).

Per-token term (minimised):
    ratio = exp(logp - old_logp)
    pg    = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))      # PPO min, negated
    pg    = min(pg, -A * dual_clip)  where A < 0                                 # dual clip, optional
    term  = pg + beta * kl(logp, ref_logp)                                        # only if beta != 0

``old_logp``, ``ref_logp`` and ``advantages`` are constants: gradients flow only through ``logp``.
On-policy (one update per rollout batch) pass ``old_logp=logp``; the ratio is then 1 with the right
gradient.

Aggregations (how the masked per-token terms become one number):
- ``token_mean``: sum over all masked tokens / number of masked tokens (DAPO; the method's choice).
- ``seq_mean_token_mean``: mean over each sequence's tokens, then mean over sequences (original GRPO).
- ``seq_mean_token_sum_norm``: each sequence's token sum / ``max_len_norm`` (a constant generation
  budget), then mean over sequences (Dr. GRPO).
Sequences without any masked token (padding rows) count for nothing in the sequence means.
Aggregations register (``rl.loss_aggregation``, `AGGREGATIONS`): one is
``fn(masked, seq_tokens, seq_count, max_len_norm) -> (loss_sum, normaliser)`` over the masked
per-token terms [B, T], each token's sequence's masked-token count (broadcastable to [B, T]) and
the count of sequences with a masked token; it is traced inside the jitted step.

Sum form for gradient accumulation: ``policy_loss_terms`` returns ``(loss_sum, normaliser, sums)``
for one microbatch. The whole-batch loss is ``sum(loss_sum) / sum(normaliser)`` over microbatches
(normaliser = masked-token count for ``token_mean``, non-empty sequence count otherwise), so
``token_mean`` is normalised by the GLOBAL token count, not averaged per microbatch. ``sums`` holds
token-level metric sums that add across microbatches; ``token_metrics`` turns them into means.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from negojax.registry import Registry

AGGREGATIONS = Registry("rl.loss_aggregation", {
    "token_mean": "negojax.rl.losses:token_mean",
    "seq_mean_token_mean": "negojax.rl.losses:seq_mean_token_mean",
    "seq_mean_token_sum_norm": "negojax.rl.losses:seq_mean_token_sum_norm",
})
KL_ESTIMATORS = ("k1", "k2", "k3")
# k3 exponentiates the log-ratio; beyond +-10 the estimate is dominated by a few tokens and overflows
# in bf16, so the log-ratio is clamped first.
K3_LOG_RATIO_LIMIT = 10.0


def kl_penalty(logp, ref_logp, estimator: str = "k3") -> jnp.ndarray:
    """Per-token estimate of KL(pi || pi_ref) from sampled tokens' log-probs [B, T].

    k1 = logp - ref; k2 = 0.5 (logp - ref)^2; k3 = exp(ref - logp) - (ref - logp) - 1 with
    ref - logp clamped to [-10, 10] (Schulman's low-variance, non-negative estimator).
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown kl_estimator {estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")
    log_ratio = jax.lax.stop_gradient(ref_logp) - logp
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    log_ratio = jnp.clip(log_ratio, -K3_LOG_RATIO_LIMIT, K3_LOG_RATIO_LIMIT)
    return jnp.exp(log_ratio) - log_ratio - 1.0


def _masked_mean(values, mask) -> jnp.ndarray:
    return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def mean_entropy(token_entropy, mask) -> jnp.ndarray:
    """Mean per-token entropy [B, T] over the masked tokens (a metric, not a loss term)."""
    mask = jnp.asarray(mask).astype(jnp.asarray(token_entropy).dtype)
    return _masked_mean(token_entropy, mask)


def advantage_stats(advantages, row_mask=None) -> dict:
    """Mean, std, min and max of per-sequence advantages [B] over the rows in ``row_mask`` [B]."""
    advantages = jnp.asarray(advantages)
    rows = jnp.ones(advantages.shape, bool) if row_mask is None else jnp.asarray(row_mask, bool)
    weights = rows.astype(advantages.dtype)
    count = jnp.maximum(weights.sum(), 1.0)
    mean = (advantages * weights).sum() / count
    std = jnp.sqrt((((advantages - mean) * weights) ** 2).sum() / count)
    any_row = rows.any()
    return {
        "advantage_mean": mean,
        "advantage_std": std,
        "advantage_min": jnp.where(any_row, jnp.where(rows, advantages, jnp.inf).min(), 0.0),
        "advantage_max": jnp.where(any_row, jnp.where(rows, advantages, -jnp.inf).max(), 0.0),
    }


def token_metrics(sums: dict) -> dict:
    """Token-level metric means from the (possibly microbatch-accumulated) sums of policy_loss_terms."""
    tokens = jnp.maximum(sums["tokens"], 1.0)
    metrics = {"clip_fraction": sums["clipped"] / tokens, "ratio_mean": sums["ratio"] / tokens}
    for name in ("dual_clip_fraction", "kl"):
        if name in sums:
            metrics[name] = sums[name] / tokens
    return metrics


def token_mean(masked, mask, seq_tokens, seq_count, max_len_norm):
    """DAPO's (the method's): every masked token of the batch weighs the same."""
    del seq_tokens, seq_count, max_len_norm
    return masked.sum(), mask.sum()


def seq_mean_token_mean(masked, mask, seq_tokens, seq_count, max_len_norm):
    """The original GRPO's: each sequence's token mean, then the mean over sequences."""
    del mask, max_len_norm
    return (masked / seq_tokens).sum(), seq_count


def seq_mean_token_sum_norm(masked, mask, seq_tokens, seq_count, max_len_norm):
    """Dr. GRPO's: each sequence's token sum over a constant budget, then the mean."""
    del mask, seq_tokens
    return masked.sum() / max_len_norm, seq_count


def _check_options(logp, old_logp, advantages, mask, ref_logp, clip_low, clip_high, dual_clip,
                   aggregation, beta, kl_estimator, max_len_norm, sequence_ids) -> None:
    AGGREGATIONS.get(aggregation)
    if kl_estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown kl_estimator {kl_estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")
    if not (0.0 <= clip_low < 1.0 and clip_high >= 0.0):
        raise ValueError(f"clip_low must be in [0, 1) and clip_high >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None to disable), got {dual_clip}")
    if beta != 0.0 and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp (the reference model's log-probs); set beta=0 to drop the KL term")
    if aggregation == "seq_mean_token_sum_norm" and not max_len_norm:
        raise ValueError("aggregation 'seq_mean_token_sum_norm' needs max_len_norm (the constant generation budget in tokens)")
    for name, value in (("old_logp", old_logp), ("mask", mask), ("ref_logp", ref_logp),
                        ("sequence_ids", sequence_ids)):
        if value is not None and jnp.shape(value) != jnp.shape(logp):
            raise ValueError(f"{name} has shape {jnp.shape(value)}, expected logp's shape {jnp.shape(logp)}")
    if jnp.ndim(logp) != 2 or jnp.shape(advantages) not in (jnp.shape(logp)[:1], jnp.shape(logp)):
        raise ValueError(f"need logp [B, T] and advantages [B] or [B, T], got {jnp.shape(logp)} and "
                         f"{jnp.shape(advantages)}")


def policy_loss_terms(logp, old_logp, advantages, mask, *, clip_low: float = 0.2, clip_high: float = 0.2,
                      dual_clip: float | None = None, aggregation: str = "token_mean", ref_logp=None,
                      beta: float = 0.0, kl_estimator: str = "k3", max_len_norm: int | None = None,
                      sequence_ids=None):
    """Sum form of ``policy_loss`` for one (micro)batch: ``(loss_sum, normaliser, sums)``.

    loss = loss_sum / normaliser; across microbatches add both before dividing (module docstring).
    ``sums``: tokens, clipped, ratio (+ dual_clip_fraction with dual clip, kl with ref_logp), each a
    sum over masked tokens, for ``token_metrics``. ``beta`` must be a Python number: with beta == 0 the
    KL term is not built at all.
    """
    _check_options(logp, old_logp, advantages, mask, ref_logp, clip_low, clip_high, dual_clip,
                   aggregation, beta, kl_estimator, max_len_norm, sequence_ids)
    # bf16 log-probs are upcast: token counts and sums over a batch need more than bf16's 8 bits.
    logp = jnp.asarray(logp)
    logp = logp.astype(jnp.result_type(logp.dtype, jnp.float32))
    mask = jnp.asarray(mask).astype(logp.dtype)
    adv = jax.lax.stop_gradient(jnp.asarray(advantages, logp.dtype))
    adv = adv[:, None] if adv.ndim == 1 else adv
    ratio = jnp.exp(logp - jax.lax.stop_gradient(jnp.asarray(old_logp, logp.dtype)))

    unclipped = -adv * ratio
    clipped = -adv * jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = jnp.maximum(unclipped, clipped)
    sums = {
        "tokens": mask.sum(),
        "clipped": ((clipped > unclipped) * mask).sum(),
        "ratio": (jax.lax.stop_gradient(ratio) * mask).sum(),
    }
    if dual_clip is not None:
        cap = -adv * dual_clip
        capped = (adv < 0) & (per_token > cap)
        per_token = jnp.where(capped, cap, per_token)
        sums["dual_clip_fraction"] = (capped * mask).sum()
    if ref_logp is not None:
        kl = kl_penalty(logp, jnp.asarray(ref_logp, logp.dtype), kl_estimator)
        sums["kl"] = (jax.lax.stop_gradient(kl) * mask).sum()
        if beta != 0.0:
            per_token = per_token + beta * kl

    masked = per_token * mask
    if sequence_ids is None:  # a row is one sequence
        row_tokens = mask.sum(axis=1, keepdims=True)
        seq_tokens, seq_count = jnp.maximum(row_tokens, 1.0), (row_tokens > 0).sum()
    else:  # each masked token carries 1 / (its sequence's masked-token count) of one sequence
        ids = jnp.asarray(sequence_ids)
        same = (ids[:, :, None] == ids[:, None, :]) & (mask[:, None, :] > 0)
        seq_tokens = jnp.maximum(same.sum(axis=2).astype(logp.dtype), 1.0)
        seq_count = (mask / seq_tokens).sum()
    loss_sum, normaliser = AGGREGATIONS.get(aggregation)(masked, mask, seq_tokens, seq_count,
                                                         max_len_norm)
    return loss_sum, jnp.asarray(normaliser, logp.dtype), sums


def policy_loss(logp, old_logp, advantages, mask, *, clip_low: float = 0.2, clip_high: float = 0.2,
                dual_clip: float | None = None, aggregation: str = "token_mean", ref_logp=None,
                beta: float = 0.0, kl_estimator: str = "k3", max_len_norm: int | None = None):
    """GRPO policy loss for one batch: ``(loss, metrics)``.

    metrics: clip_fraction, ratio_mean, (dual_clip_fraction), (kl, only when ref_logp is given) and
    advantage_mean/std/min/max over the sequences with at least one masked token.
    DAPO's asymmetric clip is clip_high=0.28 (from config).
    """
    loss_sum, normaliser, sums = policy_loss_terms(
        logp, old_logp, advantages, mask, clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip,
        aggregation=aggregation, ref_logp=ref_logp, beta=beta, kl_estimator=kl_estimator,
        max_len_norm=max_len_norm)
    loss = loss_sum / jnp.maximum(normaliser, 1.0)
    rows = jnp.asarray(mask).astype(bool).any(axis=1)
    metrics = {**token_metrics(sums), **advantage_stats(jax.lax.stop_gradient(advantages), rows)}
    return loss, metrics

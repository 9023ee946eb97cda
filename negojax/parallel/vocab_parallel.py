"""Vocab-parallel log-softmax, target gather and entropy over the `tensor` mesh axis.

Each tensor shard multiplies the final hidden states by its slice of the unembedding [D, V/t],
so full-vocabulary logits never exist on one device. The log-partition function is assembled from
per-shard pieces with explicit collectives:
    m   = pmax(max_v logits)                         (stability shift, no gradient needed)
    lse = m + log psum(sum_v exp(logits - m))
    logp(target) = psum(logit at target, 0 on shards that do not own it) - lse
    entropy      = lse - psum(sum_v softmax * logits)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from negojax.parallel.sharding import LogicalRules

AXIS = "tensor"


def vocab_parallel_logprobs(hidden, w_unembed, targets, rules: LogicalRules, *, chunk: int = 128):
    """log p(targets) and entropy [B, T] from hidden [B, T, D] and the unembedding [D, V].

    Logits are float32 and formed `chunk` positions at a time on each shard (rematerialised in
    the backward pass), so at most [B/shards, chunk, V/t] logits exist per device.
    """
    mesh = rules.mesh
    B, T, _ = hidden.shape
    V = w_unembed.shape[1]
    if V % mesh.shape[AXIS]:
        raise ValueError(f"vocab_parallel_logprobs: vocabulary {V} is not divisible by the tensor "
                         f"axis {mesh.shape[AXIS]}; change mesh.tensor")
    batch_axes = rules.spec(("act_batch",), (B,))[0]
    if batch_axes is not None and AXIS in (batch_axes if isinstance(batch_axes, tuple)
                                           else (batch_axes,)):
        raise ValueError("vocab_parallel_logprobs: the batch must not be sharded over 'tensor'; "
                         "fix the act_batch rule")
    body = _shard_body(chunk)
    return jax.shard_map(
        body, mesh=mesh,
        in_specs=(P(batch_axes, None, None), P(None, AXIS), P(batch_axes, None)),
        out_specs=(P(batch_axes, None), P(batch_axes, None)),
    )(hidden, w_unembed, targets)


def _shard_body(chunk: int):
    def body(h, w, targets):
        b, t, d = h.shape
        v_local = w.shape[1]
        offset = jax.lax.axis_index(AXIS) * v_local
        size = min(chunk, t)
        pad = (-t) % size
        n = (t + pad) // size
        hs = jnp.pad(h, ((0, 0), (0, pad), (0, 0))).reshape(b, n, size, d).swapaxes(0, 1)
        ts = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, n, size).swapaxes(0, 1)

        @jax.checkpoint
        def one(hc, tc):
            logits = jnp.einsum("btd,dv->btv", hc, w).astype(jnp.float32)
            # The shift only keeps exp() in range; lse's gradient does not depend on it.
            m = jax.lax.pmax(jax.lax.stop_gradient(logits).max(axis=-1), AXIS)
            lse = m + jnp.log(jax.lax.psum(jnp.exp(logits - m[..., None]).sum(-1), AXIS))
            local = tc - offset
            owned = (local >= 0) & (local < v_local)
            picked = jnp.take_along_axis(logits, jnp.clip(local, 0, v_local - 1)[..., None],
                                         axis=-1)[..., 0]
            target_logit = jax.lax.psum(jnp.where(owned, picked, 0.0), AXIS)
            probs = jnp.exp(logits - lse[..., None])
            entropy = lse - jax.lax.psum((probs * logits).sum(-1), AXIS)
            return target_logit - lse, entropy

        logp, entropy = jax.lax.map(lambda a: one(*a), (hs, ts))
        unchunk = lambda a: a.swapaxes(0, 1).reshape(b, n * size)[:, :t]
        return unchunk(logp), unchunk(entropy)

    return body

"""Batched, bucketed, sharded sampling over a preallocated KV cache.

A `Session` holds one batch of rows and their KV cache. `extend` appends tokens to every row
(a prompt, or another speaker's message) with one jitted prefill; `generate` decodes inside
`lax.while_loop` until every row hit a stop id or the token budget. A multi-turn dialogue is
extend / generate / extend / ... without re-encoding history; `rewind` cuts rows back to a
common prefix when the chat template re-renders part of it.

Shapes are rounded up to buckets (batch, block length, cache length, new-token buffer) by
`negojax.shapes`, so a run compiles a bounded set of programs; `TRACE_COUNTS` records each
trace for tests.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from negojax.models import transformer
from negojax.models.config import ModelConfig
from negojax.sampling.prefix_tree import prefix_tree
from negojax.sampling.rules import SamplingParams, sample_tokens
from negojax.shapes import batch_bucket, bucket

TRACE_COUNTS: collections.Counter = collections.Counter()


def _no_constraint(x, _names):
    return x


@functools.partial(jax.jit, static_argnames=("config", "constrain", "window"),
                   donate_argnames=("cache",))
def _prefill(params, config: ModelConfig, ids, num_new, cache, lengths, constrain, window: int):
    TRACE_COUNTS["prefill"] += 1
    last = jnp.maximum(num_new - 1, 0)
    logits, cache = transformer.forward_cached(params, config, ids, cache, lengths, constrain,
                                               logits_at=last, window=window)
    cache = jax.tree.map(lambda c: constrain(c, transformer.CACHE_AXES), cache)
    return logits, cache, lengths + num_new


@functools.partial(jax.jit, static_argnames=("config", "constrain", "buffer", "mode", "window"),
                   donate_argnames=("cache",))
def _decode(params, config: ModelConfig, logits, cache, lengths, active, key, temperature,
            top_p, stop_ids, budget, buffer: int, mode: tuple, constrain, window: int):
    """Decode up to `budget` (<= buffer) tokens per active row."""
    TRACE_COUNTS["decode"] += 1
    B = logits.shape[0]
    zeros_f = jnp.zeros((B, buffer), jnp.float32)
    init = dict(step=jnp.int32(0), logits=logits, cache=cache, lengths=lengths,
                done=~active, count=jnp.zeros(B, jnp.int32), stopped=jnp.zeros(B, bool),
                tokens=jnp.zeros((B, buffer), jnp.int32), sampled_logp=zeros_f,
                raw_logp=zeros_f, key=key)

    def cond(s):
        return (s["step"] < budget) & ~jnp.all(s["done"])

    def body(s):
        key, sub = jax.random.split(s["key"])
        # Each row's whole vocabulary on one device: the running mass of the inverse-CDF draw
        # is a cumulative sum, which over a tensor-sharded vocabulary ran ~100x slower than the
        # rest of a decode step (8 CPU devices, tensor=2).
        logits = constrain(s["logits"], ("act_batch", None))
        tok, lp_s, lp_r = sample_tokens(logits, sub, temperature, top_p, mode)
        live = ~s["done"]
        i = s["step"]
        hit_stop = live & jnp.isin(tok, stop_ids)
        new_logits, cache = transformer.forward_cached(
            params, config, tok[:, None], s["cache"], s["lengths"], constrain,
            logits_at=jnp.zeros(B, jnp.int32), window=window)
        return dict(
            step=i + 1, logits=new_logits, cache=cache,
            lengths=s["lengths"] + live, done=s["done"] | hit_stop,
            count=s["count"] + live, stopped=s["stopped"] | hit_stop,
            tokens=s["tokens"].at[:, i].set(jnp.where(live, tok, 0)),
            sampled_logp=s["sampled_logp"].at[:, i].set(jnp.where(live, lp_s, 0.0)),
            raw_logp=s["raw_logp"].at[:, i].set(jnp.where(live, lp_r, 0.0)),
            key=key)

    s = jax.lax.while_loop(cond, body, init)
    cache = jax.tree.map(lambda c: constrain(c, transformer.CACHE_AXES), s["cache"])
    return (s["tokens"], s["sampled_logp"], s["raw_logp"], s["count"], s["stopped"],
            s["logits"], cache, s["lengths"])


@functools.partial(jax.jit, static_argnums=1, donate_argnums=0)
def _grow(cache, extra: int):
    return jax.tree.map(lambda c: jnp.pad(c, ((0, 0), (0, 0), (0, extra), (0, 0), (0, 0))),
                        cache)


@functools.partial(jax.jit, static_argnames=("constrain",))
def _take_rows(cache, lengths, logits, index, constrain):
    cache = {k: constrain(jnp.take(c, index, axis=1), transformer.CACHE_AXES)
             for k, c in cache.items()}
    return cache, lengths[index], logits[index]


@functools.partial(jax.jit, static_argnames=("constrain",), donate_argnames=("cache", "logits"))
def put_rows(cache, logits, rows_cache, rows_logits, index, constrain):
    """Copy rows_cache's rows (and their next-token logits) into the rows `index` of a cache
    at least as long; an index past the last row drops the row (the source's batch padding)."""
    TRACE_COUNTS["put_rows"] += 1
    width = rows_cache["k"].shape[2]
    cache = {k: constrain(c.at[:, index, :width].set(rows_cache[k].astype(c.dtype), mode="drop"),
                          transformer.CACHE_AXES)
             for k, c in cache.items()}
    return cache, logits.at[index].set(rows_logits, mode="drop")


@dataclasses.dataclass
class Generation:
    """What one `generate` call produced, per real row (padding rows removed)."""
    tokens: list[list[int]]          # new ids, stop id included when hit
    sampled_logp: list[np.ndarray]   # log-prob under the sampling distribution
    policy_logp: list[np.ndarray]    # log-prob under the temperature-1 policy (pi_old)
    finished: np.ndarray             # bool [B]: stopped on a stop id (not on the budget)


class Session:
    """A batch of token sequences with a KV cache, grown by `extend` and `generate`."""

    def __init__(self, params, config: ModelConfig, batch: int, *, rules=None,
                 batch_multiple: int = 1, min_cache: int = 64):
        self.params = params
        self.config = config
        self.rules = rules
        self.constrain = rules.constrain if rules is not None else _no_constraint
        multiple = max(batch_multiple, rules.batch_size_multiple if rules else 1)
        self.batch = batch
        self.padded_batch = -(-batch_bucket(batch) // multiple) * multiple
        self.lengths = self._place(jnp.zeros(self.padded_batch, jnp.int32), ("act_batch",))
        self.cache = self._place_cache(transformer.init_cache(
            config, self.padded_batch, bucket(min_cache)))
        self.logits = None  # next-token logits per row, after the last extend/generate

    # ------------------------------------------------------------------ placement
    def _place(self, x, names):
        if self.rules is None:
            return x
        return jax.device_put(x, self.rules.sharding(names, x.shape))

    def _place_cache(self, cache):
        return {k: self._place(v, transformer.CACHE_AXES) for k, v in cache.items()}

    @property
    def capacity(self) -> int:
        return self.cache["k"].shape[2]

    def _ensure_capacity(self, needed: int) -> int:
        """Grow the cache to hold `needed` slots per row; returns the attention window: the
        bucketed prefix of the cache that holds them."""
        if needed > self.capacity:
            extra = bucket(needed) - self.capacity
            self.cache = self._place_cache(_grow(self.cache, extra))
        return min(bucket(needed), self.capacity)

    def _copy_rows(self, rows: Sequence[int]) -> "Session":
        """A new session whose row b continues from this session's row rows[b]."""
        out = Session(self.params, self.config, len(rows), rules=self.rules, min_cache=1)
        index = np.zeros(out.padded_batch, np.int32)
        index[:len(rows)] = rows
        out.cache, out.lengths, out.logits = _take_rows(
            self.cache, self.lengths, self.logits,
            out._place(jnp.asarray(index), ("act_batch",)), self.constrain)
        return out

    # ------------------------------------------------------------------ operations
    def extend(self, token_lists: Sequence[Sequence[int]]) -> None:
        """Append token_lists[b] to row b (rows may get different counts, including zero)."""
        if len(token_lists) != self.batch:
            raise ValueError(f"extend: got {len(token_lists)} rows, session has {self.batch}")
        longest = max(len(t) for t in token_lists)
        if longest == 0:
            return
        block = bucket(longest)
        ids = np.zeros((self.padded_batch, block), np.int32)
        num_new = np.zeros(self.padded_batch, np.int32)
        for b, toks in enumerate(token_lists):
            ids[b, :len(toks)] = toks
            num_new[b] = len(toks)
        window = self._ensure_capacity(int(np.max(np.asarray(self.lengths))) + block)
        logits, self.cache, self.lengths = _prefill(
            self.params, self.config, self._place(jnp.asarray(ids), ("act_batch", None)),
            self._place(jnp.asarray(num_new), ("act_batch",)), self.cache, self.lengths,
            self.constrain, window)
        if self.logits is None:
            self.logits = logits
        else:  # rows that received nothing keep their previous next-token logits
            self.logits = jnp.where(jnp.asarray(num_new > 0)[:, None], logits, self.logits)

    def rewind(self, keep: Sequence[Optional[int]]) -> None:
        """Cut row b back to its first keep[b] tokens (None leaves it). A chat template that
        re-renders history changes a row's text from some point on; the cache keeps the common
        prefix and the caller extends every cut row from there (which also refreshes its
        next-token logits), instead of prefilling the whole history again."""
        if len(keep) != self.batch:
            raise ValueError(f"rewind: got {len(keep)} rows, session has {self.batch}")
        lengths = np.asarray(jax.device_get(self.lengths)).copy()
        for b, n in enumerate(keep):
            if n is not None:
                if not 0 <= n <= lengths[b]:
                    raise ValueError(f"rewind: row {b} holds {lengths[b]} tokens; cannot keep {n}")
                lengths[b] = n
        self.lengths = self._place(jnp.asarray(lengths), ("act_batch",))

    def generate(self, max_new_tokens: int, sampling: SamplingParams = SamplingParams(), *,
                 stop_ids: Sequence[int] = (), seed: int = 0,
                 rows: Optional[Sequence[bool]] = None) -> Generation:
        """Decode up to max_new_tokens for every row (or only rows where `rows` is True)."""
        if self.logits is None:
            raise ValueError("generate: call extend() with a prompt first")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens}: must be >= 1")
        active = np.zeros(self.padded_batch, bool)
        active[:self.batch] = True if rows is None else np.asarray(rows, bool)
        buffer = bucket(max_new_tokens, 8)
        window = self._ensure_capacity(int(np.max(np.asarray(self.lengths))) + buffer)
        stops = np.asarray(sorted(set(stop_ids)) or [-1], np.int32)
        out = _decode(self.params, self.config, self.logits, self.cache, self.lengths,
                      self._place(jnp.asarray(active), ("act_batch",)),
                      jax.random.PRNGKey(seed), jnp.float32(sampling.temperature or 1.0),
                      jnp.float32(sampling.top_p), jnp.asarray(stops),
                      jnp.int32(max_new_tokens), buffer, sampling.mode, self.constrain, window)
        tokens, s_logp, r_logp, count, stopped, self.logits, self.cache, self.lengths = out
        tokens, s_logp, r_logp, count, stopped = jax.device_get(
            (tokens, s_logp, r_logp, count, stopped))
        n = self.batch
        return Generation(
            tokens=[tokens[b, :count[b]].tolist() for b in range(n)],
            sampled_logp=[s_logp[b, :count[b]] for b in range(n)],
            policy_logp=[r_logp[b, :count[b]] for b in range(n)],
            finished=np.asarray(stopped[:n]))


def prefill(params, config: ModelConfig, prompts: Sequence[Sequence[int]], *, rules=None,
            extra_slots: int = 0, min_shared: int = 32) -> Session:
    """A Session whose row b holds prompts[b], with room for `extra_slots` more tokens per row.

    Openings that several prompts share (`prefix_tree`: a judge's rubric, then a dilemma, ...)
    are prefilled once per tree level and their cache rows copied to the rows below them.
    """
    roots = prefix_tree(prompts, min_shared)
    steps = [(roots, None, [True] * len(roots))]  # (each row's node, parent row, newly reached)
    while any(n.row is None for n in steps[-1][0]):
        parent, nodes, fresh = [], [], []
        for i, n in enumerate(steps[-1][0]):
            for child in (n.children if n.row is None else [n]):  # a leaf rides along
                parent.append(i)
                nodes.append(child)
                fresh.append(n.row is None)
        steps.append((nodes, parent, fresh))

    def tokens(node):
        return list(prompts[node.rows()[0]][node.start:node.end])

    # Room for each step's bucketed block after the longest row, and for generation.
    capacity = max(bucket(max(len(p) for p in prompts)) + extra_slots, *(
        max(n.start if new else n.end for n, new in zip(nodes, fresh))
        + bucket(max(n.end - n.start for n, new in zip(nodes, fresh) if new))
        for nodes, _, fresh in steps))
    session = Session(params, config, len(roots), rules=rules, min_cache=capacity)
    for nodes, parent, fresh in steps:
        if parent is not None:
            session = session._copy_rows(parent)
        session.extend([tokens(n) if new else [] for n, new in zip(nodes, fresh)])
    row_of = {n.row: b for b, n in enumerate(steps[-1][0])}
    order = [row_of[i] for i in range(len(prompts))]
    if order != list(range(len(prompts))):
        session = session._copy_rows(order)
    return session


def sample(params, config: ModelConfig, prompts: Sequence[Sequence[int]], *,
           max_new_tokens: int, sampling: SamplingParams = SamplingParams(),
           stop_ids: Sequence[int] = (), seed: int = 0, rules=None) -> Generation:
    """Prompts of different lengths in, new tokens with their log-probs out."""
    if not prompts:
        return Generation([], [], [], np.zeros(0, bool))
    if any(len(p) == 0 for p in prompts):
        raise ValueError("sample: every prompt needs at least one token")
    session = prefill(params, config, prompts, rules=rules,
                      extra_slots=bucket(max_new_tokens, 8))
    return session.generate(max_new_tokens, sampling, stop_ids=stop_ids, seed=seed)

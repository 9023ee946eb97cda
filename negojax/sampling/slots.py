"""Decode slots over one preallocated KV cache, for a scheduler whose rows come and go.

A `SlotCache` holds `slots` rows of one model. A slot is free or writes one message: `insert`
prefills prompts into free slots (through `prefill`, so prompts that share an opening compute
it once, or with `prefix_rows` through a `PrefixCache`, which also reuses the openings of
earlier calls; then their cache rows are copied into the slots), and `decode` runs up to `steps`
decode steps over the slots at once (the bucketed prefix of slots that holds the live ones). Each slot has its own length, token budget and RNG key;
its k-th new token is drawn with fold_in(key, k), so what a slot writes depends on neither the
slot it sits in nor what the other slots do. A slot is free again as soon as it hits a stop id
or its budget, and the next `insert` may take it while the other slots keep their place.

The per-slot bookkeeping lives on the host and travels with each call (a few ints per slot);
the cache and the next-token logits stay on the device. Shapes are bucketed as in `Session`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from negojax.models import transformer
from negojax.models.config import ModelConfig
from negojax.sampling.rules import SamplingParams, sample_tokens
from negojax.sampling.prefix_cache import PrefixCache
from negojax.sampling.sampler import TRACE_COUNTS, _grow, _no_constraint, prefill, put_rows
from negojax.shapes import batch_bucket, bucket


@functools.partial(jax.jit, static_argnames=("config", "constrain", "buffer", "mode", "window"),
                   donate_argnames=("cache", "all_logits"))
def _decode_slots(params, config: ModelConfig, all_logits, cache, lengths, keys, count, budget,
                  live, temperature, top_p, stop_ids, steps, until_free, buffer: int,
                  mode: tuple, constrain, window: int):
    """Up to `steps` (<= buffer) decode steps over the first S slots (S = len(lengths)); a
    live slot stops on a stop id or once it holds `budget` new tokens. Leaves the loop early
    when no slot is live, or with `until_free` as soon as one slot is free again. The loop
    carries only those slots' cache rows (all of them: no copy) and attends over their first
    `window` positions, so its cost follows the live rows and their lengths, not the cache's
    size."""
    TRACE_COUNTS["slot_decode"] += 1
    S = lengths.shape[0]
    logits = all_logits[:S]
    rows = {k: c[:, :S] for k, c in cache.items()}
    zeros_f = jnp.zeros((S, buffer), jnp.float32)
    init = dict(step=jnp.int32(0), logits=logits, cache=rows, lengths=lengths, count=count,
                live=live, stopped=jnp.zeros(S, bool), tokens=jnp.zeros((S, buffer), jnp.int32),
                sampled_logp=zeros_f, raw_logp=zeros_f)

    def cond(s):
        freed = until_free & jnp.any(live & ~s["live"])
        return (s["step"] < steps) & jnp.any(s["live"]) & ~freed

    def body(s):
        live, i = s["live"], s["step"]
        row_keys = jax.vmap(jax.random.fold_in)(keys, s["count"])
        tok, lp_s, lp_r = sample_tokens(constrain(s["logits"], ("act_batch", None)), row_keys,
                                        temperature, top_p, mode)
        hit_stop = live & jnp.isin(tok, stop_ids)
        count = s["count"] + live
        new_logits, cache = transformer.forward_cached(
            params, config, tok[:, None], s["cache"], s["lengths"], constrain,
            logits_at=jnp.zeros(S, jnp.int32), window=window)
        return dict(
            step=i + 1, logits=jnp.where(live[:, None], new_logits, s["logits"]), cache=cache,
            lengths=s["lengths"] + live, count=count,
            live=live & ~hit_stop & (count < budget), stopped=s["stopped"] | hit_stop,
            tokens=s["tokens"].at[:, i].set(jnp.where(live, tok, 0)),
            sampled_logp=s["sampled_logp"].at[:, i].set(jnp.where(live, lp_s, 0.0)),
            raw_logp=s["raw_logp"].at[:, i].set(jnp.where(live, lp_r, 0.0)))

    s = jax.lax.while_loop(cond, body, init)
    cache = {k: constrain(c.at[:, :S].set(s["cache"][k]), transformer.CACHE_AXES)
             for k, c in cache.items()}
    return (s["tokens"], s["sampled_logp"], s["raw_logp"], s["count"], s["live"], s["stopped"],
            s["step"], all_logits.at[:S].set(s["logits"]), cache)


@dataclasses.dataclass
class SlotDecode:
    """What one `decode` call produced: the new tokens of every slot that was live (a slot's
    tokens continue those of its earlier calls), and the slots that finished in it."""
    tokens: dict[int, list[int]]
    sampled_logp: dict[int, np.ndarray]
    policy_logp: dict[int, np.ndarray]
    ended: dict[int, bool]       # slot -> stopped on a stop id (False: on its budget)
    steps: int                   # decode steps run
    rows: int                    # slots each step ran over (live or not)


class SlotCache:
    """`slots` decode slots of one model over one KV cache."""

    def __init__(self, params, config: ModelConfig, slots: int, *, rules=None,
                 min_cache: int = 64, prefix_rows: int = 0):
        self.params = params
        self.prefixes = (PrefixCache(params, config, prefix_rows, rules=rules)
                         if prefix_rows else None)
        self.config = config
        self.rules = rules
        self.constrain = rules.constrain if rules is not None else _no_constraint
        multiple = rules.batch_size_multiple if rules else 1
        self.slots = slots
        self.padded = -(-batch_bucket(slots) // multiple) * multiple
        self.cache = {k: self._place(v, transformer.CACHE_AXES) for k, v in
                      transformer.init_cache(config, self.padded, bucket(min_cache)).items()}
        self.logits = self._place(jnp.zeros((self.padded, config.vocab_size), jnp.float32),
                                  ("act_batch", None))
        self.lengths = np.zeros(self.padded, np.int32)
        self.keys = np.zeros((self.padded, 2), np.uint32)
        self.count = np.zeros(self.padded, np.int32)
        self.budget = np.zeros(self.padded, np.int32)
        self.live = np.zeros(self.padded, bool)

    def _place(self, x, names):
        if self.rules is None:
            return x
        return jax.device_put(x, self.rules.sharding(names, x.shape))

    @property
    def capacity(self) -> int:
        return self.cache["k"].shape[2]

    def _ensure_capacity(self, needed: int) -> int:
        """Grow the cache to hold `needed` tokens per slot; returns the attention window."""
        if needed > self.capacity:
            grown = _grow(self.cache, bucket(needed) - self.capacity)
            self.cache = {k: self._place(v, transformer.CACHE_AXES) for k, v in grown.items()}
        return min(bucket(needed), self.capacity)

    def free_slots(self) -> list[int]:
        """Lowest first, so live slots gather at the front and `decode` steps fewer rows."""
        return [b for b in range(self.slots) if not self.live[b]]

    @property
    def rows_decoded(self) -> int:
        """The slots a decode call steps: a bucketed prefix holding every live slot."""
        multiple = self.rules.batch_size_multiple if self.rules else 1
        last = int(np.flatnonzero(self.live)[-1]) + 1
        return min(-(-batch_bucket(last) // multiple) * multiple, self.padded)

    @property
    def busy(self) -> bool:
        return bool(self.live.any())

    def insert(self, slots: Sequence[int], prompts: Sequence[Sequence[int]], keys,
               budget: int) -> None:
        """Prefill prompts[j] into free slot slots[j], to write up to `budget` tokens with the
        raw RNG key keys[j] (uint32 [2])."""
        if any(self.live[b] for b in slots):
            raise ValueError(f"insert: slots {list(slots)} include a live slot")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("insert: every prompt needs at least one token")
        rows = (self.prefixes.prefill(prompts) if self.prefixes is not None else
                prefill(self.params, self.config, prompts, rules=self.rules))
        self._ensure_capacity(max(rows.capacity, max(map(len, prompts)) + budget))
        index = np.full(rows.padded_batch, self.padded, np.int32)
        index[:len(slots)] = slots
        self.cache, self.logits = put_rows(self.cache, self.logits, rows.cache, rows.logits,
                                          self._place(jnp.asarray(index), ("act_batch",)),
                                          self.constrain)
        slots = np.asarray(slots)
        self.lengths[slots] = [len(p) for p in prompts]
        self.keys[slots] = np.asarray(keys, np.uint32)
        self.count[slots] = 0
        self.budget[slots] = budget
        self.live[slots] = True

    def decode(self, steps: int, sampling: SamplingParams = SamplingParams(), *,
               stop_ids: Sequence[int] = (), until_free: bool = False) -> SlotDecode:
        """Up to `steps` decode steps over the live slots: fewer once none is live, or with
        `until_free` once a slot is free for a prompt that waits."""
        if steps < 1:
            raise ValueError(f"steps={steps}: must be >= 1")
        before = self.live.copy()
        if not before.any():
            return SlotDecode({}, {}, {}, {}, 0, 0)
        buffer = bucket(steps, 8)
        reach = np.minimum(self.budget - self.count, steps)
        window = self._ensure_capacity(int(np.max((self.lengths + reach)[before])))
        rows = self.rows_decoded
        stops = np.asarray(sorted(set(stop_ids)) or [-1], np.int32)
        put = lambda x: self._place(jnp.asarray(x[:rows]), ("act_batch",))
        out = _decode_slots(
            self.params, self.config, self.logits, self.cache, put(self.lengths),
            self._place(jnp.asarray(self.keys[:rows]), ("act_batch", None)), put(self.count),
            put(self.budget), put(before), jnp.float32(sampling.temperature or 1.0),
            jnp.float32(sampling.top_p), jnp.asarray(stops), jnp.int32(steps),
            jnp.bool_(until_free), buffer,
            sampling.mode, self.constrain, window)
        tokens, s_logp, r_logp, count, live, stopped, ran = jax.device_get(out[:7])
        self.logits, self.cache = out[7], out[8]
        new = np.zeros(self.padded, np.int32)
        new[:rows] = count - self.count[:rows]
        self.lengths += new
        self.count[:rows] = count
        self.live[:rows] = live
        wrote = np.flatnonzero(before).tolist()
        return SlotDecode(
            tokens={b: tokens[b, :new[b]].tolist() for b in wrote},
            sampled_logp={b: s_logp[b, :new[b]] for b in wrote},
            policy_logp={b: r_logp[b, :new[b]] for b in wrote},
            ended={b: bool(stopped[b]) for b in wrote if not self.live[b]},
            steps=int(ran), rows=rows)

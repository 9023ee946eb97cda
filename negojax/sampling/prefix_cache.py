"""Prompts kept on the device between prefill calls, so a later prompt that opens like one of
them computes only the rest (the continuous scheduler's prefix cache).

`prefill` computes an opening that several prompts of one call share once (`prefix_tree`). The
continuous scheduler prefills the turns that start together, often one or two at a time, so the
opening the dialogues of a task share (system prompt, dilemma, personas: most of a windowed
prompt) would be computed again for every turn. A `PrefixCache` keeps the KV rows of the last
`rows` distinct prompts it prefilled. A new prompt starts from the stored row it shares the
longest opening with (at least `min_shared` tokens): that row is copied and only the rest of
the prompt is prefilled. Position k of a row depends only on the first k + 1 tokens, so a stored
prompt serves every prompt that opens like it, whole or in part. The least recently used row
makes room for a new one.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from negojax.models.config import ModelConfig
from negojax.sampling.prefix_tree import _common_prefix
from negojax.sampling.sampler import Session, prefill, put_rows


class PrefixCache:
    """The KV rows of up to `rows` prompts of one model."""

    def __init__(self, params, config: ModelConfig, rows: int, *, rules=None,
                 min_shared: int = 32):
        if rows < 1:
            raise ValueError(f"PrefixCache: rows={rows} must be >= 1")
        self.params, self.config, self.rules = params, config, rules
        self.rows, self.min_shared = rows, min_shared
        self.store = Session(params, config, rows, rules=rules, min_cache=1)
        self.store.logits = self.store._place(
            jnp.zeros((self.store.padded_batch, config.vocab_size), jnp.float32),
            ("act_batch", None))
        self.tokens: list[np.ndarray | None] = [None] * rows
        self.last_used = np.full(rows, -1)
        self.calls = 0
        self.tokens_prefilled = 0  # prompt tokens not taken from a stored row
        self.tokens_reused = 0     # prompt tokens copied from a stored row

    def _match(self, prompt: np.ndarray) -> tuple[int | None, int]:
        """(row, n): the stored row whose first n tokens open `prompt`, n largest; (None, 0)
        when no row shares at least min_shared tokens (or the whole prompt)."""
        best, reach = None, 0
        for r, stored in enumerate(self.tokens):
            if stored is None:
                continue
            n = _common_prefix(prompt, stored)
            if n == len(prompt) and len(stored) != n:
                n -= 1  # a stored row holds the logits after its own last token only
            if n > reach:
                best, reach = r, n
        if best is None or reach < min(self.min_shared, len(prompt)):
            return None, 0
        return best, reach

    def prefill(self, prompts: Sequence[Sequence[int]]) -> Session:
        """A Session whose row b holds prompts[b] (as `sampler.prefill` gives it)."""
        self.calls += 1
        arrays = [np.asarray(p, np.int32) for p in prompts]
        matches = [self._match(p) for p in arrays]
        sources = {r for r, _ in matches if r is not None}
        fresh = [j for j, (r, _) in enumerate(matches) if r is None]
        self.last_used[list(sources)] = self.calls  # not to be evicted by this call
        if len(fresh) == len(prompts) or len(fresh) + len(sources) > self.rows:
            session = prefill(self.params, self.config, prompts, rules=self.rules,
                              min_shared=self.min_shared)
            self.tokens_prefilled += sum(map(len, prompts))
            self._remember(session, arrays)
            return session
        if fresh:
            # The prompts without a stored opening go first, in one call (they may share one
            # of their own); stored, they are then taken like the others.
            first = prefill(self.params, self.config, [prompts[j] for j in fresh],
                            rules=self.rules, min_shared=self.min_shared)
            self._remember(first, [arrays[j] for j in fresh])
            self.tokens_prefilled += sum(len(prompts[j]) for j in fresh)
            matches = [self._match(p) for p in arrays]
        for j, (_, n) in enumerate(matches):
            if j not in fresh:
                self.tokens_reused += n
                self.tokens_prefilled += len(arrays[j]) - n
        lengths = np.zeros(self.store.padded_batch, np.int32)
        lengths[:self.rows] = [0 if t is None else len(t) for t in self.tokens]
        self.store.lengths = self.store._place(jnp.asarray(lengths), ("act_batch",))
        session = self.store._copy_rows([r for r, _ in matches])
        session.rewind([n for _, n in matches])
        session.extend([p[n:].tolist() for p, (_, n) in zip(arrays, matches)])
        self._remember(session, arrays)
        return session

    def _remember(self, session: Session, prompts: Sequence[np.ndarray]) -> None:
        """Store session row j (holding prompts[j]) unless an equal prompt is stored; never
        over a row this call reads or wrote."""
        index = np.full(session.padded_batch, self.store.padded_batch, np.int32)  # drop
        for j, prompt in enumerate(prompts):
            same = [r for r, t in enumerate(self.tokens)
                    if t is not None and len(t) == len(prompt) and (t == prompt).all()]
            if same:
                self.last_used[same[0]] = self.calls
                continue
            free = [r for r in range(self.rows) if self.last_used[r] != self.calls]
            if not free:
                break
            r = min(free, key=lambda r: self.last_used[r])
            self.tokens[r], self.last_used[r] = prompt, self.calls
            index[j] = r
        if (index < self.store.padded_batch).any():
            self.store._ensure_capacity(session.capacity)
            self.store.cache, self.store.logits = put_rows(
                self.store.cache, self.store.logits, session.cache, session.logits,
                self.store._place(jnp.asarray(index), ("act_batch",)), self.store.constrain)

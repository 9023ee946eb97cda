"""Pack train sequences into fewer, fuller rows; sequences that open alike share their stem.

A GRPO batch is G samples of each prompt, and with re-encoded dialogue turns most of a sequence
is its prompt (system prompt, persona, dilemma: ~300 of ~450 tokens at the defaults), identical
across the group. Padding every sequence to the longest and computing each prompt G times is
most of the update. Here sequences whose tokens agree on at least `min_shared` leading tokens (a
root of `sampling.prefix_tree`) become one prefix tree: the common stem once (branch 0), then
each sequence's remainder as its own branch that attends to the stem and to itself
(`transformer.prefix_tree_mask`), with rotary positions continuing from the stem. Trees (split
into chunks that fit a row) and lone sequences are then packed first-fit-decreasing into rows,
as separate segments. Log-probs, losses and gradients equal the unpacked batch's up to float
summation order.

The stem stops before the group's first loss token, so every branch opens with a context token:
a loss token's context is then always the position before it, as in an unpacked row.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from negojax.models.config import ModelConfig
from negojax.rl.batch import PACKING_FIELDS, TrainBatch
from negojax.sampling.prefix_tree import prefix_tree
from negojax.shapes import bucket, round_up

_ROW_FIELDS = ("tokens", "loss_mask", "old_logp", "advantages") + PACKING_FIELDS


def attention_parity_length(config: ModelConfig) -> int:
    """The row length at which a row's attention FLOPs (every query against every key of the row,
    4 * heads * head_dim per pair and layer) equal its matmul FLOPs (2 * layer params per token):
    the price of a longer row."""
    d, f, h, k, hd = (config.hidden_size, config.intermediate_size, config.num_heads,
                      config.num_kv_heads, config.head_dim)
    layer_params = d * (h + 2 * k) * hd + h * hd * d + 3 * d * f
    return max(1, layer_params // (2 * h * hd))


def _first_fit(items, sizes, capacity: int, base: int = 0) -> list[tuple[int, list]]:
    """Items, in the given order, into the first bin with room: (used, items) per bin, where a
    bin holds `base` (a shared stem) plus its items' sizes, at most `capacity`."""
    bins: list[list] = []
    for item, size in zip(items, sizes):
        for b in bins:
            if b[0] + size <= capacity:
                b[0] += size
                b[1].append(item)
                break
        else:
            bins.append([base + size, [item]])
    return [(used, members) for used, members in bins]


def _pieces(tokens: Sequence[np.ndarray], first_loss: Sequence[int], length: int,
            min_shared: int) -> list[tuple[int, list[int], int]]:
    """(stem length, member indices, total tokens): prefix trees cut to fit `length`, and lone
    sequences (stem length = their length, one member)."""
    pieces = []
    for root in prefix_tree([t.tolist() for t in tokens], min_shared):
        members = root.rows()
        stem = min([root.end] + [first_loss[i] - 1 for i in members])
        if len(members) == 1 or stem < min_shared:
            pieces += [(len(tokens[i]), [i], len(tokens[i])) for i in members]
            continue
        longest_first = sorted(members, key=lambda i: -len(tokens[i]))
        chunks = _first_fit(longest_first, [len(tokens[i]) - stem for i in longest_first],
                            length, base=stem)
        pieces += [(stem, sorted(m), total) if len(m) > 1 else (len(tokens[m[0]]), m, total)
                   for total, m in chunks]
    return pieces


def _rows(pieces, length: int) -> list[list]:
    """First-fit decreasing of pieces into rows of `length` tokens."""
    pieces = sorted(pieces, key=lambda p: -p[2])
    return [row for _, row in _first_fit(pieces, [p[2] for p in pieces], length)]


def _empty_rows(rows: int, length: int) -> dict:
    floats = ("loss_mask", "old_logp", "advantages")
    return {key: np.zeros((rows, length), np.float32 if key in floats else np.int32)
            for key in _ROW_FIELDS}


def pack_sequences(sequences, advantages: Sequence[float], lengths: Sequence[int], *,
                   parity_length: int, min_shared: int = 32) -> TrainBatch:
    """Packed rows for `sequences` (each with tokens, loss_mask, old_logp) and their advantages
(one per sequence, or one per token).

    Tries each row length in `lengths` (each >= the longest sequence) and keeps the one whose
    rows cost the fewest FLOPs: rows * L * (1 + L / parity_length). Returns a packed TrainBatch
    of [rows, L] arrays (advantages per token; segments numbered from 1 in each row).
    """
    if not sequences:
        return TrainBatch(**_empty_rows(0, min(lengths)))
    tokens = [np.asarray(s.tokens) for s in sequences]
    first_loss = [int(np.argmax(np.asarray(s.loss_mask) > 0)) if np.any(s.loss_mask) else len(t)
                  for s, t in zip(sequences, tokens)]
    longest = max(len(t) for t in tokens)
    if min(lengths) < longest:
        raise ValueError(f"pack_sequences: row length {min(lengths)} < the longest sequence "
                         f"({longest} tokens)")
    best = None
    for length in lengths:
        rows = _rows(_pieces(tokens, first_loss, length, min_shared), length)
        cost = len(rows) * length * (1 + length / parity_length)
        if best is None or cost < best[0]:
            best = (cost, length, rows)
    _, length, rows = best

    out = _empty_rows(len(rows), length)

    def put(r, at, i, lo, hi, segment, branch) -> int:
        """Sequence i's tokens [lo, hi) into row r from column `at`; returns the next column."""
        s, end = sequences[i], at + hi - lo
        for key, values in (("tokens", tokens[i]), ("loss_mask", s.loss_mask),
                            ("old_logp", s.old_logp)):
            out[key][r, at:end] = np.asarray(values)[lo:hi]
        # read only where loss_mask is 1
        out["advantages"][r, at:end] = np.broadcast_to(advantages[i], len(tokens[i]))[lo:hi]
        out["position_ids"][r, at:end] = np.arange(lo, hi)
        out["segment_ids"][r, at:end] = segment
        out["branch_ids"][r, at:end] = branch
        return end

    for r, row in enumerate(rows):
        at = 0
        for segment, (stem, members, _) in enumerate(row, start=1):
            at = put(r, at, members[0], 0, stem, segment, 0)  # a lone sequence is all stem
            if len(members) > 1:
                for branch, i in enumerate(members, start=1):
                    at = put(r, at, i, stem, len(tokens[i]), segment, branch)
    return TrainBatch(**out)


def row_length_candidates(longest: int) -> tuple[int, ...]:
    """Row lengths packing may choose from: the longest sequence's bucket, or a bucket half as
    long again, which lets more sequences share one copy of their prompt stem."""
    return tuple(sorted({bucket(longest), bucket(longest * 3 // 2)}))


def train_batch(sequences: Sequence, advantages: Sequence, model_config: ModelConfig, *,
                rows_multiple: int, microbatches: int, hosts: int = 1,
                agree: Callable = np.asarray) -> TrainBatch:
    """This host's part of the train batch for `sequences` and their advantages (per sequence,
    one per token: negojax.rl.credit.token_advantages): packed, padded to a row count that
    `rows_multiple` (data * fsdp * microbatches)
    divides, laid out for the microbatches, with its loss positions. Row count and lengths
    must be the same on every host: `agree(x)` gathers a value from all `hosts` (identity with
    one), and the largest wins."""
    longest = int(agree(np.asarray(max([len(s.tokens) for s in sequences] or [1]))).max())
    parity = attention_parity_length(model_config)
    packed = pack_sequences(sequences, advantages, row_length_candidates(longest),
                            parity_length=parity)
    length = int(agree(np.asarray(packed.tokens.shape[1])).max())
    if packed.tokens.shape[1] != length:  # another host chose longer rows
        packed = pack_sequences(sequences, advantages, (length,), parity_length=parity)
    sizes = [len(packed.tokens), int(packed.loss_mask.sum(axis=1).max(initial=1))]
    rows, trained = agree(np.asarray(sizes)).reshape(-1, 2).max(0)
    rows = round_up(bucket(int(rows), 1), max(1, rows_multiple // hosts))
    return packed.padded(rows, microbatches).with_loss_positions(bucket(int(trained)))

"""The train batch: one typed structure that packing produces and the train step consumes.

`TrainBatch` owns the batch's keys and shapes, its padding to a row count the mesh and the
microbatches divide, its microbatch layout and its checks. Leading dim B (rows, sharded over the
data axes), T tokens per row:

  tokens [B, T] int32; loss_mask [B, T] (1 on tokens the policy sampled, 0 elsewhere and at
  position 0, which has no prediction); old_logp [B, T], log pi_old(tokens[b, t] | tokens[b, :t])
  (the sampler's temperature-1 log-probs); advantages [B] per row, or [B, T] per token when
  packed; optional ref_logp [B, T] (then no reference forward runs in the step).
  loss_positions [B, P] int32 (P <= T), optional: every position whose loss_mask is 1, padded
  with 0. Only those positions are unembedded; the vocabulary projection and its softmax are a
  fifth of a small model's step when every position gets one, and the policy's own tokens are
  a small fraction of a re-encoded dialogue turn.
  position_ids, segment_ids, branch_ids [B, T] int32, all or none (`negojax.rl.packing`): a
  row holds several sequences, and sequences that open alike share one copy of their stem.
  segment_ids (0 pads) and branch_ids (0 = stem) give the attention mask
  (`transformer.prefix_tree_mask`), position_ids the rotary positions. A packed row's loss
  token is never the first of its branch, so position t - 1 still holds its context.
"""
from __future__ import annotations

from typing import Callable, Optional

import flax.struct
import numpy as np

from negojax.shapes import bucket

PACKING_FIELDS = ("position_ids", "segment_ids", "branch_ids")


def loss_positions(loss_mask: np.ndarray, width: Optional[int] = None) -> np.ndarray:
    """[B, P] indices of each row's loss_mask == 1 positions, padded with 0. P is `width` (the
    same on every host) or the largest count's bucket (`negojax.shapes`, at least 64)."""
    longest = int((loss_mask > 0).sum(axis=1).max(initial=0))
    if width is None:
        width = bucket(longest, 64)
    width = min(width, loss_mask.shape[1])
    if longest > width:
        raise ValueError(f"loss_positions: a row has {longest} loss tokens but width={width}; "
                         "pass a width >= the most loss tokens in any row (on every host)")
    out = np.zeros((loss_mask.shape[0], width), np.int32)
    for b in range(loss_mask.shape[0]):
        where = np.flatnonzero(loss_mask[b] > 0)
        out[b, :len(where)] = where
    return out


@flax.struct.dataclass
class TrainBatch:
    tokens: np.ndarray
    loss_mask: np.ndarray
    old_logp: np.ndarray
    advantages: np.ndarray
    loss_positions: Optional[np.ndarray] = None
    position_ids: Optional[np.ndarray] = None
    segment_ids: Optional[np.ndarray] = None
    branch_ids: Optional[np.ndarray] = None
    ref_logp: Optional[np.ndarray] = None

    @property
    def packed(self) -> bool:
        return self.segment_ids is not None

    def packing(self) -> Optional[dict]:
        """{position_ids, segment_ids, branch_ids} of a packed batch, else None."""
        return {k: getattr(self, k) for k in PACKING_FIELDS} if self.packed else None

    def with_loss_positions(self, width: Optional[int] = None) -> "TrainBatch":
        return self.replace(loss_positions=loss_positions(np.asarray(self.loss_mask), width))

    def padded(self, rows: int, microbatches: int = 1) -> "TrainBatch":
        """The batch padded with loss-free rows to `rows` (host arrays), laid out for the step's
        microbatch split: microbatch i holds rows i, i + k, ... (`microbatches`), so the rows
        given fill microbatches one after another and padding rows share microbatches, which
        the step skips."""
        present = len(self.tokens)
        k = microbatches if rows % microbatches == 0 else 1
        per_microbatch = rows // k
        order = [(j % per_microbatch) * k + j // per_microbatch for j in range(present)]

        def pad(x):
            x = np.asarray(x)
            out = np.zeros((rows,) + x.shape[1:], x.dtype)
            out[order] = x
            return out
        return self.replace(**{name: pad(value) for name, value in self.fields().items()})

    def fields(self) -> dict:
        """{name: array} of the fields that are set."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__
                if getattr(self, name) is not None}

    def microbatches(self, k: int, constrain: Callable) -> "TrainBatch":
        """[B, ...] -> [k, B/k, ...]; microbatch i takes rows i, i + k, ..., so each device keeps
        its rows. `constrain(x, names)` pins the sharding of the split arrays."""
        def split(x):
            x = x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)
            return constrain(x, (None, "act_batch") + (None,) * (x.ndim - 2))
        return self.replace(**{name: split(v) for name, v in self.fields().items()})

    def check(self, rows_multiple: int) -> None:
        """Shapes agree with each other, and the rows split over data * fsdp * microbatches
        (`rows_multiple`); each problem is a one-line ValueError naming the fix."""
        B, T = self.tokens.shape
        for name in ("loss_mask", "old_logp", "ref_logp"):
            value = getattr(self, name)
            if value is not None and value.shape != (B, T):
                raise ValueError(f"train batch: {name} is {value.shape}, tokens are {(B, T)}")
        positions = self.loss_positions
        if positions is not None and (positions.ndim != 2 or positions.shape[0] != B
                                      or positions.shape[1] > T):
            raise ValueError(f"train batch: loss_positions is {positions.shape}, need "
                             f"[{B}, P <= {T}]; build it with TrainBatch.with_loss_positions")
        packing = [k for k in PACKING_FIELDS if getattr(self, k) is not None]
        if packing and len(packing) < len(PACKING_FIELDS):
            raise ValueError(f"train batch: has {packing} but not all of {PACKING_FIELDS}; build "
                             "a packed batch with negojax.rl.pack_sequences")
        for name in packing:
            if getattr(self, name).shape != (B, T):
                raise ValueError(f"train batch: {name} is {getattr(self, name).shape}, tokens are "
                                 f"{(B, T)}")
        need = (B, T) if packing else (B,)
        if self.advantages.shape != need:
            raise ValueError(f"train batch: advantages is {self.advantages.shape}, need {need} "
                             f"({'per token: the batch is packed' if packing else 'per row'})")
        if B % rows_multiple:
            raise ValueError(f"train batch: {B} rows is not a multiple of data*fsdp*"
                             f"num_microbatches = {rows_multiple}; change the rollout batch or "
                             "rl.microbatches")

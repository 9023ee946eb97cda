"""Token sequences arranged as a tree of shared openings, so each shared part is computed once.

Prompts in a batch share openings at several depths: every judge prompt opens with the judge's
role and rubric, the prompts about one dilemma go on to share its text and personas, and only
then do the dialogues differ. A node is a stretch [start, end) that all the sequences below it
share and that is at least `min_shared` tokens long or the whole of one of them (shorter
stretches are not worth a pass of their own, but identical prompts always are); a leaf is one
sequence's remainder, possibly empty.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np


@dataclasses.dataclass
class Node:
    start: int
    end: int
    children: list["Node"] = dataclasses.field(default_factory=list)
    row: Optional[int] = None  # the sequence a leaf ends; None for a shared stretch

    def rows(self) -> list[int]:
        """The sequences below this node (itself, for a leaf)."""
        if self.row is not None:
            return [self.row]
        return [r for child in self.children for r in child.rows()]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    differs = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differs[0]) if len(differs) else n


def prefix_tree(sequences: Sequence[Sequence[int]], min_shared: int = 32) -> list[Node]:
    """The roots of the tree over `sequences` (leaves' rows index into them)."""
    order = sorted(range(len(sequences)), key=lambda i: tuple(sequences[i]))
    # shared[k]: tokens order[k] and order[k + 1] open with; a run's common opening is its min.
    shared = [_common_prefix(sequences[a], sequences[b]) for a, b in zip(order, order[1:])]

    def build(lo: int, hi: int, start: int) -> list[Node]:  # order[lo:hi], shared >= start
        if hi - lo == 1:
            return [Node(start, len(sequences[order[lo]]), row=order[lo])]
        common = min(shared[lo:hi - 1])
        shortest = min(len(sequences[i]) for i in order[lo:hi])
        node = common > start and (common - start >= min_shared or common == shortest)
        children, first = [], lo
        for k in range(lo, hi):  # split where neighbours part at `common`
            if k == hi - 1 or shared[k] == common:
                children += build(first, k + 1, common if node else start)
                first = k + 1
        return [Node(start, common, children)] if node else children

    return build(0, len(order), 0) if order else []

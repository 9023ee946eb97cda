"""Who sits in the opponent seats: the live policy, a frozen snapshot of it, or one of a pool.

The policy always takes seat 0. `Opponents` keeps the snapshots (the trainable part of the
params, newest last), which the trainer checkpoints, and picks the opponent of each step.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

OPPONENT_MODES = ("frozen", "live", "pool")


class Opponents:
    """'live': every seat is the current policy and every seat is trained. 'frozen': the other
    seats play a snapshot refreshed every `refresh` steps; 'pool': one of the last `pool_size`
    snapshots, drawn per step from (seed, step). Only seat 0 is trained in both."""

    def __init__(self, mode: str, *, refresh: int, pool_size: int, seed: int):
        if mode not in OPPONENT_MODES:
            raise ValueError(f"rollout.opponent: {mode!r} is not one of {', '.join(OPPONENT_MODES)}")
        self.mode, self.refresh, self.pool_size, self.seed = mode, refresh, pool_size, seed
        self.snapshots: list = []

    def for_step(self, step: int, snapshot: Callable[[], object]):
        """(the opponent's trainable params, or None for the policy itself; the trained seats,
        or None for every seat). `snapshot()` copies the policy's trainable params."""
        if self.mode == "live":
            return None, None
        if (step - 1) % self.refresh == 0 or not self.snapshots:
            if self.refresh == 1 and self.mode == "frozen":
                # Refreshed every step: the snapshot equals the policy, so share its params
                # (one batched sampler call per turn, no copy).
                self.snapshots = []
                return None, (0,)
            self.snapshots.append(snapshot())
            self.snapshots = self.snapshots[-(self.pool_size if self.mode == "pool" else 1):]
        pick = -1
        if self.mode == "pool":
            pick = np.random.default_rng([self.seed, step, 7]).integers(len(self.snapshots))
        return self.snapshots[pick], (0,)

    def restore(self, snapshots: Optional[list]) -> None:
        self.snapshots = list(snapshots or [])

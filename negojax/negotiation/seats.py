"""Who sits where: the seats the policy takes and trains (`POLICY_SEATS`), and who fills the
others (`Opponents`): the live policy, a frozen snapshot of it, or one of a pool.

`Opponents` keeps the snapshots (the trainable part of the params, newest last), which the
trainer checkpoints, and picks the opponent of each step.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

OPPONENT_MODES = ("frozen", "live", "pool")
# first: the policy plays seat 0 (Agent 1, who writes the final solution) of every dialogue;
# rotate: dialogue g of a group seats it in g mod n, so every persona of a task is learned;
# all: it plays and trains every seat (one shared policy, SPIRAL's self-play).
POLICY_SEATS = ("first", "rotate", "all")


def policy_seat_lineups(mode: str, num_seats: int, group_size: int) -> list[tuple[int, ...]]:
    """The seats the policy takes in each dialogue g of a group of `group_size`."""
    if mode == "first":
        return [(0,)] * group_size
    if mode == "rotate":
        return [(g % num_seats,) for g in range(group_size)]
    if mode == "all":
        return [tuple(range(num_seats))] * group_size
    raise ValueError(f"rollout.policy_seats: {mode!r} is not one of {', '.join(POLICY_SEATS)}")


class Opponents:
    """The params of the seats the policy does not take. 'live': the current policy (untrained
    there); 'frozen': a snapshot refreshed every `refresh` steps; 'pool': one of the last
    `pool_size` snapshots, drawn per step from (seed, step)."""

    def __init__(self, mode: str, *, refresh: int, pool_size: int, seed: int):
        if mode not in OPPONENT_MODES:
            raise ValueError(f"rollout.opponent: {mode!r} is not one of {', '.join(OPPONENT_MODES)}")
        self.mode, self.refresh, self.pool_size, self.seed = mode, refresh, pool_size, seed
        self.snapshots: list = []

    def for_step(self, step: int, snapshot: Callable[[], object]):
        """The opponent's trainable params, or None for the policy itself. `snapshot()` copies
        the policy's trainable params."""
        if self.mode == "live":
            return None
        if (step - 1) % self.refresh == 0 or not self.snapshots:
            if self.refresh == 1 and self.mode == "frozen":
                # Refreshed every step: the snapshot equals the policy, so share its params
                # (one batched sampler call per turn, no copy).
                self.snapshots = []
                return None
            self.snapshots.append(snapshot())
            self.snapshots = self.snapshots[-(self.pool_size if self.mode == "pool" else 1):]
        pick = -1
        if self.mode == "pool":
            pick = np.random.default_rng([self.seed, step, 7]).integers(len(self.snapshots))
        return self.snapshots[pick]

    def restore(self, snapshots: Optional[list]) -> None:
        self.snapshots = list(snapshots or [])

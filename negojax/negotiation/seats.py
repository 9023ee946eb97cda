"""Who sits where: the seats the policy takes and trains (`POLICY_SEATS`), and who fills the
others (`Opponents`): the live policy, a frozen snapshot of it, one of a pool, one of a league
drawn by prioritised fictitious self-play, or a fixed model of its own (an external seat).

`Opponents` keeps the snapshots (the trainable part of the params, newest last), which the
trainer checkpoints with the league's statistics, and picks the opponent of each step.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

OPPONENT_MODES = ("frozen", "live", "pool", "league", "model")
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


# PFSP: how far a member's reward EMA moves toward each new step's mean reward against it, the
# exponent of the "hard" weighting (AlphaStar's f_hard(x) = (1 - x)^p) and the floor that keeps
# every member drawable.
LEAGUE_EMA = 0.5
LEAGUE_POWER = 2
LEAGUE_FLOOR = 0.05


def pfsp_weights(rewards: list) -> np.ndarray:
    """Draw probabilities of the league's members from their reward EMAs (None: never drawn).

    x = (r - min) / (max - min) over the members drawn so far (x = 0 when they all tie), a
    never-drawn member has the optimistic prior x = 0; weight (1 - x)^LEAGUE_POWER + LEAGUE_FLOOR,
    normalised to sum 1. The member the policy does worst against is drawn most."""
    seen = np.asarray([r for r in rewards if r is not None], np.float64)
    low, span = (seen.min(), np.ptp(seen)) if seen.size else (0.0, 0.0)
    x = np.asarray([0.0 if r is None or span == 0 else (r - low) / span for r in rewards])
    weights = (1 - x) ** LEAGUE_POWER + LEAGUE_FLOOR
    return weights / weights.sum()


class Opponents:
    """The params of the seats the policy does not take. 'live': the current policy (untrained
    there); 'frozen': a snapshot refreshed every `refresh` steps; 'pool': one of the last
    `pool_size` snapshots, drawn per step from (seed, step); 'league': a snapshot joins every
    `refresh` steps, the last `pool_size` kept, and each step draws one from (seed, step) with
    `pfsp_weights` of the members' reward EMAs, which `record` updates after the step is
    scored; 'model': `external`, a seat of negojax.negotiation.external_seats, in every step."""

    def __init__(self, mode: str, *, refresh: int, pool_size: int, seed: int, external=None):
        if mode not in OPPONENT_MODES:
            raise ValueError(f"rollout.opponent: {mode!r} is not one of {', '.join(OPPONENT_MODES)}")
        if (mode == "model") != (external is not None):
            raise ValueError("rollout.opponent: 'model' and only 'model' plays an external seat "
                             "(rollout.opponent_model)")
        self.mode, self.refresh, self.pool_size, self.seed = mode, refresh, pool_size, seed
        self.external = external
        self.snapshots: list = []
        self.rewards: list = []  # league: per member, its reward EMA, None until drawn
        self.drawn: Optional[int] = None  # league: the member of the last for_step

    def for_step(self, step: int, snapshot: Callable[[], object]):
        """The opponent's trainable params, the external seat, or None for the policy itself.
        `snapshot()` copies the policy's trainable params."""
        if self.mode == "live":
            return None
        if self.mode == "model":
            return self.external
        if (step - 1) % self.refresh == 0 or not self.snapshots:
            if self.refresh == 1 and self.mode == "frozen":
                # Refreshed every step: the snapshot equals the policy, so share its params
                # (one batched sampler call per turn, no copy).
                self.snapshots = []
                return None
            keep = 1 if self.mode == "frozen" else self.pool_size
            self.snapshots = (self.snapshots + [snapshot()])[-keep:]
            self.rewards = (self.rewards + [None])[-keep:]
        pick = -1
        if self.mode == "pool":
            pick = np.random.default_rng([self.seed, step, 7]).integers(len(self.snapshots))
        if self.mode == "league":
            pick = self.drawn = int(np.random.default_rng([self.seed, step, 7]).choice(
                len(self.snapshots), p=pfsp_weights(self.rewards)))
        return self.snapshots[pick]

    def record(self, reward: float) -> dict:
        """The league hears the step's mean reward against the member it drew; returns the
        metrics row's opponent fields ({} outside a league)."""
        if self.mode != "league":
            return {}
        if np.isfinite(reward):  # a step whose samples all dropped says nothing
            old = self.rewards[self.drawn]
            self.rewards[self.drawn] = (reward if old is None
                                        else (1 - LEAGUE_EMA) * old + LEAGUE_EMA * reward)
        return {"opponent_index": self.drawn, "league_size": len(self.snapshots)}

    def state(self) -> dict:
        """What a checkpoint's meta keeps besides the snapshots."""
        return {"rewards": list(self.rewards)}

    def restore(self, snapshots: Optional[list], state: Optional[dict] = None) -> None:
        self.snapshots = list(snapshots or [])
        self.rewards = list((state or {}).get("rewards", [None] * len(self.snapshots)))

"""Who sits in which seat: the params each seat samples with and which seats are trained."""
from __future__ import annotations

import dataclasses

OPPONENT_MODES = ("live", "frozen", "pool")


@dataclasses.dataclass(frozen=True)
class Seats:
    params: list        # index = seat; the same object for several seats means one model
    trainable: tuple    # seats whose tokens become TrainSequences


def seat_params_for(mode: str, policy_params, opponent_params=None, *, num_seats: int = 2
                    ) -> Seats:
    """'live': every seat is the current policy and every seat is trained. 'frozen': seat 0 is
    the policy, the others a snapshot refreshed by the trainer; 'pool': the same layout with a
    snapshot the trainer draws from its pool per rollout. Only seat 0 is trained in both."""
    if mode not in OPPONENT_MODES:
        raise ValueError(f"opponent mode {mode!r}: must be one of {OPPONENT_MODES}")
    if num_seats < 2:
        raise ValueError(f"num_seats={num_seats}: a negotiation needs at least 2 seats")
    if mode == "live":
        return Seats([policy_params] * num_seats, tuple(range(num_seats)))
    if opponent_params is None:
        raise ValueError(f"opponent mode {mode!r} needs opponent_params (a params snapshot)")
    return Seats([policy_params] + [opponent_params] * (num_seats - 1), (0,))

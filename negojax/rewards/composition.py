"""From judge outputs to per-sample rewards: CA score if agreed, else 0, plus named extras.

Extra components are off by default; each is switched on by giving it a coefficient, reads its
per-dialogue statistic from `dialogue_stats`, and comes back in `parts` under its own name so it
can be logged on its own.
"""
import numpy as np

from negojax.rewards import judge


def overlong_turn_penalty(coefficient: float, dialogue_stats) -> np.ndarray:
    """-coefficient per turn that hit the token cap (stat "overlong_turns": count per dialogue)."""
    return -coefficient * np.asarray(dialogue_stats["overlong_turns"], dtype=np.float64)


COMPONENTS = {"overlong_turn_penalty": overlong_turn_penalty}
# reward.mode: what each seat is paid. "collective": every seat the dialogue's collective reward
# (the paper's); "own": each seat its own utility; "mixed": prosocial * collective + (1 -
# prosocial) * own.
REWARD_MODES = ("collective", "own", "mixed")


def score_final_solutions(judge_, tasks, final_solutions, group_size: int
                          ) -> tuple[np.ndarray, list]:
    """The judge's CA scores [P, G] of the final solutions (P*G, p-major; None where a dialogue
    wrote none), NaN where there is none and where judging failed; and each sample's failure
    kind (P*G, p-major; None where it was scored or not asked)."""
    scores = np.full(len(final_solutions), np.nan)
    failures = [None] * len(final_solutions)
    rows = [k for k, s in enumerate(final_solutions) if s is not None]
    if rows:
        t = [tasks[k // group_size] for k in rows]
        scores[rows] = judge_.ca_score([x.dilemma for x in t], [x.personas for x in t],
                                       [final_solutions[k] for k in rows])
        for k, kind in zip(rows, judge_.last_failures):
            failures[k] = kind
    return scores.reshape(len(tasks), group_size), failures


def compose_rewards(ca_scores, agreed, *, fallback: str, components=None, dialogue_stats=None,
                    name: str = "ca"):
    """Rewards for a batch of dialogues of any shape (e.g. [prompts, G]).

    ca_scores: float, NaN where the judge failed (only read where agreed): the environment's
        collective reward, named `name` in `parts` (the deliberation's CA score by default).
    agreed: bool, whether the dialogue reached agreement.
    fallback: "zero" turns a failed score into reward 0; "drop" marks the sample invalid so GRPO
        leaves it out of its group.
    components: {name: coefficient} for names in COMPONENTS; dialogue_stats: {stat: array}.
    Returns (rewards float64, valid bool, parts {name: ..., component: ...}); rewards are 0
    where invalid.
    """
    judge.check_fallback(fallback)
    ca_scores = np.asarray(ca_scores, dtype=np.float64)
    agreed = np.asarray(agreed)
    if agreed.dtype != np.bool_:
        raise ValueError("compose_rewards: `agreed` must be booleans; threshold the judge's "
                         "agreement probabilities first")
    if agreed.shape != ca_scores.shape:
        raise ValueError(f"compose_rewards: ca_scores {ca_scores.shape} and agreed "
                         f"{agreed.shape} differ in shape")
    failed = agreed & np.isnan(ca_scores)
    valid = ~failed if fallback == "drop" else np.ones_like(agreed)
    parts = {name: np.where(agreed & ~failed, ca_scores, 0.0)}
    for component, coefficient in (components or {}).items():
        if component not in COMPONENTS:
            raise ValueError(f"unknown reward component {component!r}; known: {sorted(COMPONENTS)}")
        try:
            part = COMPONENTS[component](coefficient, dialogue_stats or {})
        except KeyError as missing:
            raise ValueError(f"reward component {component!r} needs dialogue_stats[{missing}]") from None
        parts[component] = np.broadcast_to(part, ca_scores.shape).astype(np.float64)
    rewards = np.where(valid, sum(parts.values()), 0.0)
    return rewards, valid, parts


def seat_rewards(collective, utilities, valid, *, mode: str, prosocial: float) -> np.ndarray:
    """Each seat's reward [..., seats] from the collective rewards [...] and each seat's own
    utility [..., seats] (NaN for a seat the game does not have: reward 0 there): seat s gets
    lambda * collective + (1 - lambda) * utility_s, lambda 1 for "collective", 0 for "own" and
    `prosocial` for "mixed". An invalid sample (a dropped judge failure) gets 0 in every seat,
    as its collective reward does."""
    if mode not in REWARD_MODES:
        raise ValueError(f"reward.mode: {mode!r} is not one of {', '.join(REWARD_MODES)}")
    weight = {"collective": 1.0, "own": 0.0, "mixed": prosocial}[mode]
    collective = np.asarray(collective, np.float64)[..., None]
    utilities = np.nan_to_num(np.asarray(utilities, np.float64), nan=0.0)
    out = weight * collective + (1.0 - weight) * utilities
    return np.where(np.asarray(valid, bool)[..., None], out, 0.0)

"""Judge calibration in every evaluation: a sample of the CA-scored final solutions is scored a
second time and the two scorings are compared with negojax.rewards.reliability's statistics
(exact and within-one agreement, Pearson r, quadratically weighted kappa).

The second scoring is a second judge (an ensemble's second member) or the same judge reading
the parties in the other order. A CA score has one answer to judge, so there is no answer order
to swap, and the judges score greedily (a local judge reads its expected score off the logits,
an HTTP judge asks at temperature 0), so another seed would change nothing; the order of the
parties in the rubric's prompt is what a re-scoring can change with the Judge interface.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from negojax.rewards.reliability import reliability_stats

CaScore = Callable[[list, list, list], np.ndarray]
METHODS = {"second_member": "the ensemble's first member against its second",
           "reordered": "the judge against itself with the parties listed in the other order"}


def reordered(ca_score: CaScore) -> CaScore:
    """`ca_score` with each task's parties in reverse order."""
    def score(dilemmas, personas, solutions):
        return ca_score(dilemmas, [list(p)[::-1] for p in personas], solutions)
    return score


def calibrate(items: Sequence[tuple], scores: Sequence[float], second: CaScore, *,
              samples: int, seed: int, method: str, first: Optional[CaScore] = None) -> dict:
    """items: (dilemma, personas, solution) of every CA-scored final solution; scores: the
    run's score of each (NaN where the judge failed, never sampled). Up to `samples` of the
    scored items, drawn with `seed`, are scored by `second`, and by `first` where the run's
    score is not the first scoring (an ensemble's mean); returns the method, the pairs and
    reliability_stats of the two scorings."""
    scores = np.asarray(scores, np.float64)
    scored = np.flatnonzero(~np.isnan(scores))
    picked = np.sort(np.random.default_rng(seed).choice(
        scored, size=min(samples, len(scored)), replace=False))
    a = b = np.zeros(0)
    if len(picked):  # nothing to ask a judge about when no solution was scored
        dilemmas, personas, solutions = ([items[i][k] for i in picked] for k in range(3))
        a = scores[picked] if first is None else np.asarray(first(dilemmas, personas, solutions))
        b = np.asarray(second(dilemmas, personas, solutions), np.float64)
    return {"method": method, "description": METHODS[method], "sampled": int(len(picked)),
            "pairs": [[float(x), float(y)] for x, y in zip(a, b)], **reliability_stats(a, b)}

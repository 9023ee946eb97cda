"""Conflict-resolution metrics, percentile-bootstrap confidence intervals and pairwise win-rate bookkeeping.

Transcript contract (one dict per dialogue, as the negotiation engine writes them):
  "turns": list of turns; the engine stops at the agreeing turn, so for an agreed dialogue len(turns) is the
           number of turns it took to agree ("rounds to agreement" counts turns, as in the method's 2.3 -> 1.9),
  "agreement_turn": int or None (None: no agreement within the cap).
CA scores come separately: the judge's score of each dialogue's final solution, which evaluation always writes,
agreed or not (the training reward would be 0 without agreement); NaN marks a score the judge failed to give.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of `statistic` over `values`; (nan, nan) for no values."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, data.size, size=(n_resamples, data.size))
    stats = np.array([statistic(data[row]) for row in indices])
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return (float(low), float(high))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a proportion; (nan, nan) for n = 0. Unlike the bootstrap, whose
    resamples of all-0 or all-1 outcomes are all alike, it has width at 0 and 1: 0 successes in
    200 is [0, 0.019], not [0, 0]."""
    if n == 0:
        return (float("nan"), float("nan"))
    z = float(_normal_quantile(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def _normal_quantile(q: float) -> float:
    from statistics import NormalDist
    return NormalDist().inv_cdf(q)


def interval(values: Sequence[float], *, rate: bool = False, n_resamples: int = 1000,
             seed: int = 0) -> tuple[float, float]:
    """The 95% interval of the mean of `values`: Wilson's for a rate (0/1 outcomes), the
    percentile bootstrap otherwise (a metric that is not a rate but happens to be 0 everywhere
    is 0 with no spread seen, not a proportion)."""
    data = np.asarray(values, dtype=np.float64)
    if rate and data.size and np.all((data == 0) | (data == 1)):
        return wilson_interval(int(data.sum()), int(data.size))
    return bootstrap_ci(data, n_resamples=n_resamples, seed=seed)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def agreed(transcript: dict) -> bool:
    return transcript["agreement_turn"] is not None


def agreement_rate(transcripts: Sequence[dict]) -> float:
    return _mean([float(agreed(t)) for t in transcripts])


def rounds_to_agreement(transcripts: Sequence[dict]) -> list[int]:
    """Turns taken by each agreed dialogue; dialogues without agreement are left out."""
    return [len(t["turns"]) for t in transcripts if agreed(t)]


def conflict_metrics(
    transcripts: Sequence[dict], ca_scores: Sequence[float], *, n_resamples: int = 1000, seed: int = 0
) -> dict:
    """Agreement rate, mean rounds to agreement (agreed dialogues only) and mean CA score (scored dialogues
    only; n_ca_scored says how many), each with a 95% CI."""
    if len(ca_scores) != len(transcripts):
        raise ValueError(f"conflict_metrics needs one CA score per dialogue; got {len(ca_scores)} "
                         f"for {len(transcripts)}")
    agreements = [float(agreed(t)) for t in transcripts]
    rounds = rounds_to_agreement(transcripts)
    scores = [float(s) for s in ca_scores if np.isfinite(s)]
    ci = lambda values: list(bootstrap_ci(values, n_resamples=n_resamples, seed=seed))  # noqa: E731
    return {
        "n": len(transcripts),
        "agreement_rate": _mean(agreements),
        "agreement_rate_ci": ci(agreements),
        "mean_rounds": _mean(rounds),
        "mean_rounds_ci": ci(rounds),
        "n_ca_scored": len(scores),
        "mean_ca_score": _mean(scores),
        "mean_ca_score_ci": ci(scores),
    }


WIN, LOSS, TIE = 1.0, 0.0, 0.5


def pairwise_outcomes(p_a_first: Sequence[float], p_b_first: Sequence[float]) -> np.ndarray:
    """Per-item outcome for A from a judge run in both orders: 1 win, 0 loss, 0.5 tie.

    p_a_first[i] = P(first answer better) when the judge saw (A, B); p_b_first[i] = P(first answer better) when
    it saw (B, A). A wins only when both orders prefer A (p_a_first > 0.5 and p_b_first < 0.5), loses only when
    both prefer B (p_a_first < 0.5 and p_b_first > 0.5); an order-dependent verdict or an exact 0.5 is a tie.
    """
    first = np.asarray(p_a_first, dtype=np.float64)
    swapped = np.asarray(p_b_first, dtype=np.float64)
    if first.shape != swapped.shape:
        raise ValueError(f"win rate needs one judgement per item in each order; got {first.shape} and {swapped.shape}")
    outcomes = np.full(first.shape, TIE)
    outcomes[(first > 0.5) & (swapped < 0.5)] = WIN
    outcomes[(first < 0.5) & (swapped > 0.5)] = LOSS
    return outcomes


def win_rate(p_a_first: Sequence[float], p_b_first: Sequence[float], *, n_resamples: int = 1000, seed: int = 0) -> dict:
    """A's win rate with the two orders averaged: per item P(A better) = (p_a_first + 1 -
    p_b_first) / 2, so a judge's taste for a position cancels (one that prefers the first answer
    70% of the time whatever it is scores an even 0.5) and a real preference still shows;
    0.5 means even; with a 95% bootstrap CI. Requiring both orders to agree (the paper's rule,
    kept as wins, losses, ties and strict_win_rate = (wins + ties / 2) / n) pins a judge with a
    position bias at a tie. A pair the judge failed in either order (NaN) is left out of the
    averaged rate (n_judged counts the rest) and is a tie in the strict count."""
    outcomes = pairwise_outcomes(p_a_first, p_b_first)
    averaged = (np.asarray(p_a_first, np.float64) + 1.0 - np.asarray(p_b_first, np.float64)) / 2
    averaged = averaged[np.isfinite(averaged)]
    return {
        "n_judged": int(averaged.size),
        "n": int(outcomes.size),
        "wins": int(np.sum(outcomes == WIN)),
        "losses": int(np.sum(outcomes == LOSS)),
        "ties": int(np.sum(outcomes == TIE)),
        "win_rate": _mean(averaged),
        "win_rate_ci": list(bootstrap_ci(averaged, n_resamples=n_resamples, seed=seed)),
        "strict_win_rate": _mean(outcomes),
        "strict_win_rate_ci": list(bootstrap_ci(outcomes, n_resamples=n_resamples, seed=seed)),
    }

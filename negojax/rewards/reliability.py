"""How far two sets of judge scores for the same items agree (re-scoring, or two judges).

    python -m negojax.rewards.reliability A.jsonl B.jsonl

Each JSONL line is {"id": ..., "score": ...}; items are matched by id. Scores are rounded half-up
to integers 0..5 for exact / within-one agreement and kappa; Pearson r uses the raw scores.
"""
import json
import math
import sys

import numpy as np

SCORE_LEVELS = 6  # CA scores 0..5


def _rounded(scores: np.ndarray) -> np.ndarray:
    # Half-up, not NumPy's half-to-even: 2.5 is a 3 here, as a reader of the table expects.
    return np.clip(np.floor(scores + 0.5), 0, SCORE_LEVELS - 1).astype(np.int64)


def pearson_r(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    da, db = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(da @ da) * float(db @ db))
    return float(da @ db) / denominator if denominator > 0 else math.nan


def confusion_matrix(a, b) -> np.ndarray:
    """counts[i, j]: items that the first scoring rounds to i and the second to j."""
    counts = np.zeros((SCORE_LEVELS, SCORE_LEVELS), np.int64)
    np.add.at(counts, (_rounded(np.asarray(a, np.float64)), _rounded(np.asarray(b, np.float64))),
              1)
    return counts


def quadratic_weighted_kappa(a, b) -> float:
    """Cohen's kappa with weights (i - j)^2: 1 is perfect, 0 is chance-level agreement."""
    levels = np.arange(SCORE_LEVELS)
    weights = (levels[:, None] - levels[None, :]) ** 2
    observed = confusion_matrix(a, b) / len(a)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    disagreement_by_chance = float((weights * expected).sum())
    if disagreement_by_chance == 0:
        return math.nan
    return 1.0 - float((weights * observed).sum()) / disagreement_by_chance


def reliability_stats(a, b) -> dict:
    """Agreement statistics over the pairs where neither score is NaN."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"reliability needs two equally long score lists, got {a.shape} and "
                         f"{b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if len(a) == 0:
        return {"n": 0, "exact": math.nan, "within_1": math.nan, "pearson_r": math.nan,
                "weighted_kappa": math.nan}
    gap = np.abs(_rounded(a) - _rounded(b))
    return {"n": int(len(a)), "exact": float(np.mean(gap == 0)),
            "within_1": float(np.mean(gap <= 1)), "pearson_r": pearson_r(a, b),
            "weighted_kappa": quadratic_weighted_kappa(a, b)}


def read_scores(path: str) -> dict:
    scores = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                scores[record["id"]] = float(record["score"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: expected a JSON line with 'id' and a numeric "
                                 "'score'") from None
    return scores


def format_table(stats: dict, unmatched: int) -> str:
    rows = [("items scored by both", str(stats["n"])),
            ("items in only one file", str(unmatched)),
            ("exact agreement", f"{stats['exact']:.3f}"),
            ("agreement within +-1", f"{stats['within_1']:.3f}"),
            ("Pearson r", f"{stats['pearson_r']:.3f}"),
            ("weighted kappa (quadratic)", f"{stats['weighted_kappa']:.3f}")]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m negojax.rewards.reliability A.jsonl B.jsonl", file=sys.stderr)
        return 2
    try:
        first, second = read_scores(argv[0]), read_scores(argv[1])
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    shared = sorted(set(first) & set(second), key=str)
    unmatched = len(set(first) ^ set(second))
    stats = reliability_stats([first[i] for i in shared], [second[i] for i in shared])
    print(format_table(stats, unmatched))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

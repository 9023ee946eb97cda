"""How well the embedded local judge tells good resource_split deals from bad ones (issue 33).

On each of the first N held-out 2-party games, four deals are struck in resource_split's own
format (seat 0 proposes, seat 1 answers ACCEPT): the Nash-optimal allocation, an even split,
"seat 0 takes the whole pool", and one allocation drawn uniformly (seeded). The truth is the
deal's computed Nash welfare; a deal is good when it is at least the median welfare of the set.
The judge (SmolLM2-135M-Instruct, in-process, as the default config builds it) gives its
agreement probability on the two turns and its CA score of the proposal as the solution; each is
scored by its AUC (the probability that a good deal outranks a bad one; 0.5 is chance) and its
Spearman correlation with the welfare. Writes judge_auc.json beside this file.

  python experiments/judge_auc/judge_auc.py [--games 50]
"""
import argparse
import json
import os

import numpy as np

import negojax
from negojax.environments import ResourceSplit
from negojax.environments.reference_policies import even_split, take_all
from negojax.environments.resource_games import allocations, welfare
from negojax.environments.resource_split import PARTY_NAMES, _items, game_of
from negojax.rewards import LocalJudge


def auc(scores, good) -> float:
    """Mann-Whitney: P(a good deal's score > a bad one's), ties counting a half."""
    scores, good = np.asarray(scores, np.float64), np.asarray(good, bool)
    wins = (scores[good][:, None] > scores[~good][None, :]).mean()
    ties = (scores[good][:, None] == scores[~good][None, :]).mean()
    return float(wins + ties / 2)


def spearman(a, b) -> float:
    rank = lambda x: np.argsort(np.argsort(x)).astype(np.float64)  # noqa: E731
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def proposal(allocation) -> str:
    return "PROPOSAL: " + "; ".join(f"{name} gets {_items(row)}"
                                    for name, row in zip(PARTY_NAMES, allocation))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--games", type=int, default=50)
    args = parser.parse_args()
    env = ResourceSplit(welfare_kind="nash", parties=(2,))
    rng = np.random.default_rng(0)
    rows = []
    for task in env.tasks("eval")[:args.games]:
        game = game_of(task)
        every = allocations(game.counts, 2)
        nash = every[int(np.argmax([welfare(game, a, "nash") for a in every]))]
        for kind, a in (("nash_optimal", nash), ("even_split", even_split(game)),
                        ("take_all_seat0", take_all(game, 0)),
                        ("uniform_random", every[rng.integers(len(every))])):
            rows.append((task, kind, a, welfare(game, a, "nash")))
    judge = LocalJudge(negojax.load_model("default"))
    dilemmas = [t.dilemma for t, *_ in rows]
    personas = [list(t.personas) for t, *_ in rows]
    texts = [proposal(a) for _, _, a, _ in rows]
    agree = judge.agreement(dilemmas, personas,
                            [[(t.personas[0].name, x), (t.personas[1].name, "ACCEPT")]
                             for (t, *_), x in zip(rows, texts)])
    score = judge.ca_score(dilemmas, personas, texts)
    truth = np.asarray([w for *_, w in rows])
    good = truth >= np.median(truth)
    result = {"games": args.games, "deals": len(rows), "good": int(good.sum()),
              "truth": "Nash welfare; good = at least the median of the deals",
              "agreement_probability": {"auc": auc(agree, good), "spearman": spearman(agree, truth),
                                        "min": float(agree.min()), "max": float(agree.max())},
              "ca_score": {"auc": auc(score, good), "spearman": spearman(score, truth),
                           "min": float(score.min()), "max": float(score.max())},
              "mean_by_deal": {kind: {"welfare": float(np.mean([w for _, k, _, w in rows if k == kind])),
                                      "agreement_probability": float(np.mean([p for (_, k, _, _), p in zip(rows, agree) if k == kind])),
                                      "ca_score": float(np.mean([s for (_, k, _, _), s in zip(rows, score) if k == kind]))}
                               for kind in ("nash_optimal", "even_split", "take_all_seat0", "uniform_random")}}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "judge_auc.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

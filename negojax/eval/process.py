"""Process metrics of negotiation dialogues: how a dialogue got to its outcome, not only the outcome.

Per dialogue (a transcript record as negojax.negotiation.records writes it, with the task's personas):
- rounds to agreement: turns taken by an agreed dialogue (None without agreement);
- position movement of each seat per turn: a seat's movement at its k-th turn is 1 - the
  similarity of that turn to its own opening turn (its "drift"). Similarity is lexical by default:
  a turn is the bag of Porter stems of its content words and two turns are compared by the cosine
  of their stem counts. That is deterministic, costs nothing and needs no judge call, so it runs on
  every evaluated dialogue; but it measures how much a seat changed what it says, a proxy for its
  stated position (a paraphrase of the same position reads as movement). similarity_kind="judge"
  instead asks the judge whether the two statements agree on the core solution (its agreement
  prompt) and takes P(yes), which reads positions rather than words, at one judge call a pair;
- the outcome: "capitulation" when a seat's last turn is far closer to another seat's opening than
  to its own while that other seat barely moved, "convergence" when no seat capitulated, every
  seat's last turn came closer to the others' openings than its own opening was and the seats' last
  turns are closer to each other than their openings were, else "neither";
- whether each persona's core value and name are named in the final solution (case-insensitive,
  stem-tolerant: a core value counts as named when at least half of its content words appear).
Aggregates over an evaluation set carry percentile-bootstrap 95% intervals.
"""
from __future__ import annotations

import collections
import functools
import re
from typing import Callable, Sequence

import numpy as np
from nltk.stem import PorterStemmer

from negojax.data.records import Persona
from negojax.eval.metrics import bootstrap_ci

OUTCOMES = ("capitulation", "convergence", "neither")
SIMILARITIES = ("lexical", "judge")
# A seat capitulates when its last turn is this much more similar to another seat's opening than to
# its own; half the similarity scale, so borrowing a few of the other's words is not capitulation.
CAPITULATION_MARGIN = 0.5
# "Barely moved": the other seat's last turn keeps at least 80% similarity to its opening.
STILL = 0.2
# Convergence: each seat's last turn gained at least this much similarity to the others' openings,
# and the last turns are at least this much more similar to each other than the openings were.
CONVERGENCE_MARGIN = 0.1
# A core value is named when this share of its content words appears in the final solution.
NAMED_SHARE = 0.5
# Porter leaves "loyalty" as "loyalti" and "loyal" as "loyal": a stem that starts another stem
# matches it, from this length on so that short stems ("us", "art") do not match everything.
MIN_PREFIX = 4

_WORD = re.compile(r"[a-z]+")
_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each either even every few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself just let
like may me might more most must my myself neither no nor not now of off on once only or other our ours
ourselves out over own same shall she should so some such than that the their theirs them themselves then
there these they this those through to too under until up upon us very was we were what when where which
while who whom why will with would yet you your yours yourself yourselves
""".split())


@functools.lru_cache(maxsize=None)
def _stemmer() -> PorterStemmer:
    return PorterStemmer()


def content_stems(text: str | None) -> list[str]:
    """Porter stems of the content words of `text`, lower-cased, stopwords left out, in order."""
    stem = _stemmer().stem
    return [stem(w) for w in _WORD.findall((text or "").lower()) if w not in _STOPWORDS]


def similarity(a: str | None, b: str | None) -> float:
    """Cosine similarity of the stem counts of two texts, in [0, 1]; 0 when either has no content word."""
    ca, cb = collections.Counter(content_stems(a)), collections.Counter(content_stems(b))
    dot = sum(n * cb[s] for s, n in ca.items())
    if dot == 0:
        return 0.0
    norm = np.sqrt(sum(n * n for n in ca.values())) * np.sqrt(sum(n * n for n in cb.values()))
    return float(min(1.0, dot / norm))  # rounding can exceed 1 for identical texts


def _stem_named(stem: str, present: set[str]) -> bool:
    if stem in present:
        return True
    if len(stem) < MIN_PREFIX:
        return False
    return any(len(p) >= MIN_PREFIX and (p.startswith(stem) or stem.startswith(p)) for p in present)


def named_share(phrase: str, text: str | None) -> float:
    """The share of `phrase`'s distinct content stems that `text` names (stem-tolerant); 0 for no content."""
    wanted = set(content_stems(phrase))
    if not wanted:
        return 0.0
    present = set(content_stems(text))
    return sum(_stem_named(s, present) for s in wanted) / len(wanted)


def seat_turns(record: dict, num_seats: int) -> list[list[str]]:
    """Each seat's turn texts in dialogue order."""
    turns = [[] for _ in range(num_seats)]
    for turn in record["turns"]:
        turns[turn["speaker"]].append(turn["text"])
    return turns


Ref = tuple[int, int]  # (seat, index among that seat's turns)
# One similarity to score: (dilemma, personas, (label, text), (label, text)).
Query = tuple[str, Sequence[Persona], tuple[str, str], tuple[str, str]]


def _needed(turns: list[list[str]]) -> list[tuple[Ref, Ref]]:
    """The turn pairs whose similarity the metrics read: every turn against its seat's opening,
    each seat's last turn and opening against every other seat's opening, the seats' last turns."""
    spoke = [s for s, t in enumerate(turns) if t]
    last = {s: (s, len(turns[s]) - 1) for s in spoke}
    pairs = [((s, k), (s, 0)) for s in spoke for k in range(1, len(turns[s]))]
    pairs += [(x, (o, 0)) for s in spoke for o in spoke if o != s for x in (last[s], (s, 0))]
    pairs += [(last[a], last[b]) for i, a in enumerate(spoke) for b in spoke[i + 1:]]
    return [p for i, p in enumerate(pairs) if p[0] != p[1] and p not in pairs[:i]]


def lexical_similarity(queries: Sequence[Query]) -> np.ndarray:
    return np.array([similarity(x[1], y[1]) for _, _, x, y in queries], np.float64)


def judge_similarity(judge) -> Callable[[Sequence[Query]], np.ndarray]:
    """Similarity as the judge's P(the two statements agree on the core solution), asked with the
    agreement prompt every judge already has; NaN where the judge failed."""
    def score(queries: Sequence[Query]) -> np.ndarray:
        return np.asarray(judge.agreement([q[0] for q in queries], [q[1] for q in queries],
                                          [[q[2], q[3]] for q in queries]), np.float64)
    return score


def _scored(records, personas, score) -> list[dict[tuple[Ref, Ref], float]]:
    """Every needed similarity of every dialogue, in one batched call of `score`."""
    turns = [seat_turns(r, len(p)) for r, p in zip(records, personas)]
    needed = [_needed(t) for t in turns]
    label = lambda p, ref: f"{p[ref[0]].name}, its turn {ref[1] + 1}"  # noqa: E731
    queries = [(r.get("dilemma", ""), p, (label(p, a), t[a[0]][a[1]]), (label(p, b), t[b[0]][b[1]]))
               for r, p, t, pairs in zip(records, personas, turns, needed) for a, b in pairs]
    values = iter(score(queries) if queries else [])
    return [{pair: float(next(values)) for pair in pairs} for pairs in needed]


def _process(record: dict, personas: Sequence[Persona], table: dict[tuple[Ref, Ref], float]) -> dict:
    turns = seat_turns(record, len(personas))
    sim = lambda a, b: 1.0 if a == b else table[a, b]  # noqa: E731
    spoke = [s for s, t in enumerate(turns) if t]
    last = {s: (s, len(turns[s]) - 1) for s in spoke}
    drift = [1.0 - sim(last[s], (s, 0)) if s in last else float("nan") for s in range(len(turns))]
    gain = [float("nan")] * len(turns)
    outcome = "neither"
    if len(spoke) >= 2:  # one seat alone has nobody to capitulate to or converge with
        for s in spoke:
            gain[s] = float(np.mean([sim(last[s], (o, 0)) - sim((s, 0), (o, 0)) for o in spoke if o != s]))
        pairs = [(a, b) for i, a in enumerate(spoke) for b in spoke[i + 1:]]
        # Both conditions: seats that swap positions each gain toward the other's opening but end
        # as far apart as they began.
        closer = np.mean([sim(last[a], last[b]) - sim((a, 0), (b, 0)) for a, b in pairs]) >= CONVERGENCE_MARGIN
        if any(sim(last[s], (o, 0)) - sim(last[s], (s, 0)) >= CAPITULATION_MARGIN and drift[o] <= STILL
               for s in spoke for o in spoke if o != s):
            outcome = "capitulation"
        elif closer and all(gain[s] >= CONVERGENCE_MARGIN for s in spoke):
            outcome = "convergence"
    solution = record.get("final_solution")
    shares = [named_share(p.core_value, solution) for p in personas]
    agreed = record.get("agreement_turn") is not None
    return {
        "scenario_id": record.get("scenario_id"),
        "agreed": agreed,
        "rounds": len(record["turns"]) if agreed else None,
        # movement[s][k]: 1 - similarity of seat s's k-th turn to its opening (0 at k = 0).
        "movement": [[1.0 - sim((s, k), (s, 0)) for k in range(len(seat))] for s, seat in enumerate(turns)],
        "final_drift": drift,
        "gain_toward_others": gain,
        "outcome": outcome,
        "core_value_share": shares,
        "core_value_named": [share >= NAMED_SHARE for share in shares],
        "name_named": [named_share(p.name, solution) == 1.0 for p in personas],
    }


def _scorer(similarity_kind: str, judge) -> Callable[[Sequence[Query]], np.ndarray]:
    if similarity_kind not in SIMILARITIES:
        raise ValueError(f"process similarity must be one of {SIMILARITIES}, got {similarity_kind!r}")
    if similarity_kind == "judge":
        if judge is None:
            raise ValueError("judge-scored process metrics need a judge")
        return judge_similarity(judge)
    return lexical_similarity


def dialogue_process(record: dict, personas: Sequence[Persona], *, similarity_kind: str = "lexical",
                     judge=None) -> dict:
    """The process metrics of one dialogue; `personas` are its task's, in seat order."""
    (table,) = _scored([record], [personas], _scorer(similarity_kind, judge))
    return _process(record, personas, table)


def _finite(values: Sequence[float | None]) -> list[float]:
    """The values that were scored: no None (not agreed) and no NaN (a failed judge call)."""
    return [float(v) for v in values if v is not None and np.isfinite(v)]


def _mean_ci(values: Sequence[float | None], n_resamples: int, seed: int) -> dict:
    values = _finite(values)
    return {"mean": float(np.mean(values)) if values else float("nan"), "n": len(values),
            "ci": list(bootstrap_ci(values, n_resamples=n_resamples, seed=seed))}


def process_metrics(records: Sequence[dict], personas: Sequence[Sequence[Persona]], *,
                    similarity_kind: str = "lexical", judge=None, n_resamples: int = 1000,
                    seed: int = 0) -> dict:
    """Per-dialogue process metrics of `records` (one persona tuple per record) and their aggregates:
    {"n", "rounds", "final_drift", "capitulation", "convergence", "neither", "core_value_named",
     "all_core_values_named", "name_named": {"mean", "n", "ci"} each,
     "movement_by_turn": [[mean movement of seat s at its k-th turn, ...] per seat], "dialogues": [...],
     "similarity": similarity_kind}. similarity_kind "judge" scores every similarity with `judge`,
    in one batch."""
    if len(records) != len(personas):
        raise ValueError(f"process_metrics needs one persona tuple per dialogue; got {len(personas)} "
                         f"for {len(records)}")
    tables = _scored(records, personas, _scorer(similarity_kind, judge))
    dialogues = [_process(r, p, t) for r, p, t in zip(records, personas, tables)]
    stat = functools.partial(_mean_ci, n_resamples=n_resamples, seed=seed)
    result = {"n": len(dialogues),
              "rounds": stat([d["rounds"] for d in dialogues]),
              "final_drift": stat([v for d in dialogues for v in d["final_drift"]])}
    for outcome in OUTCOMES:
        result[outcome] = stat([float(d["outcome"] == outcome) for d in dialogues])
    result["core_value_named"] = stat([float(v) for d in dialogues for v in d["core_value_named"]])
    result["all_core_values_named"] = stat([float(all(d["core_value_named"])) for d in dialogues
                                            if d["core_value_named"]])
    result["name_named"] = stat([float(v) for d in dialogues for v in d["name_named"]])
    seats = max((len(d["movement"]) for d in dialogues), default=0)
    by_turn = []
    for s in range(seats):
        series = [d["movement"][s] for d in dialogues if s < len(d["movement"])]
        depth = max((len(m) for m in series), default=0)
        at = [_finite([m[k] for m in series if k < len(m)]) for k in range(depth)]
        by_turn.append([float(np.mean(v)) if v else float("nan") for v in at])
    result["movement_by_turn"] = by_turn
    result["dialogues"] = dialogues
    result["similarity"] = similarity_kind
    return result

"""Several judges as one (`judge.ensemble`): each member judges every sample, the votes combine.

CA scores are always the mean of the members' scores. Two-answer questions (agreement,
preference) combine by `vote`: "mean" averages the members' probabilities of the first answer;
"majority" counts verdicts (a member says the first answer when its probability is above 0.5,
the second below it, and abstains at exactly 0.5) and gives 1.0 or 0.0 for the side with more
verdicts, 0.5 on a tie. A member that failed on a sample (NaN) is left out of that sample's vote;
the sample fails only when every member failed.
"""
import collections

import numpy as np

from negojax.rewards import judge, rubric

VOTES = ("mean", "majority")


def check_vote(vote: str) -> str:
    if vote not in VOTES:
        raise ValueError(f"ensemble vote must be one of {VOTES}, got {vote!r}")
    return vote


def combine(question: rubric.Question, values: np.ndarray, vote: str) -> np.ndarray:
    """values [members, samples] (NaN where a member failed) -> [samples]."""
    values = np.asarray(values, np.float64)
    answered = (~np.isnan(values)).sum(axis=0)
    if question == rubric.CA_SCORE or check_vote(vote) == "mean":
        total = np.where(np.isnan(values), 0.0, values).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(answered > 0, total / answered, np.nan)
    first = (values > 0.5).sum(axis=0)   # NaN compares False either way: no verdict
    second = (values < 0.5).sum(axis=0)
    verdict = np.where(first > second, 1.0, np.where(second > first, 0.0, 0.5))
    return np.where(answered > 0, verdict, np.nan)


class JudgeEnsemble(judge.Judge):
    """Every member judges every sample; `combine` makes one value of their votes."""

    def __init__(self, members: list, vote: str = "mean", fallback: str = "zero"):
        if len(members) < 2:
            raise ValueError(f"a judge ensemble needs 2 or more members, got {len(members)}")
        self.members = list(members)
        self.vote = check_vote(vote)
        self.fallback = judge.check_fallback(fallback)

    def __repr__(self) -> str:
        return f"JudgeEnsemble({self.members!r}, vote={self.vote!r})"

    def evaluate(self, question: rubric.Question, conversations: list[list[dict]]) -> np.ndarray:
        values = np.stack([m._judged(question, conversations) for m in self.members])
        combined = combine(question, values, self.vote)
        # A sample fails only when every member failed; it is named by the first member's kind.
        self.last_failures = [self.members[0].last_failures[i] if np.isnan(v) else None
                              for i, v in enumerate(combined)]
        return combined

    def counts(self) -> collections.Counter:
        """The members' calls and failures, summed (every member judges every sample)."""
        total = collections.Counter()
        for member in self.members:
            total += member.counts()
        return total

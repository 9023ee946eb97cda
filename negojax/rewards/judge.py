"""The `Judge` interface: batched agreement, Collective-Agency score and pairwise preference.

Subclasses implement one method, `evaluate`, over already-built chat messages; the prompt text
comes from `rubric` for every judge, so judges differ only in how they read the answer.
"""
import abc
import collections
import threading

import numpy as np

from negojax.rewards import rubric

FALLBACKS = ("zero", "drop")
# Guards every judge's counts, and the first creation of its per-thread state.
_LOCK = threading.Lock()


def check_fallback(fallback: str) -> str:
    if fallback not in FALLBACKS:
        raise ValueError(f"judge fallback must be one of {FALLBACKS}, got {fallback!r}")
    return fallback


def _check_same_length(**columns) -> int:
    lengths = {name: len(column) for name, column in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"judge batch columns differ in length: {lengths}")
    return next(iter(lengths.values()))


class Judge(abc.ABC):
    """A judge LLM. Every method is batched and returns float64 [N].

    NaN marks a sample whose judging failed (only a remote judge can fail); callers decide what a
    failure means through `fallback` ("zero": reward 0, "drop": leave the sample out of its group),
    which `compose_rewards` applies. NaN agreement compares False with any threshold, so a failed
    agreement check means "not agreed yet".
    """

    fallback: str = "zero"

    # The continuous rollout scheduler runs agreement batches in threads on one judge: each
    # thread reads back the failure kinds of its own batch.
    @property
    def last_failures(self):
        return getattr(self._thread_state(), "failures", None)

    @last_failures.setter
    def last_failures(self, kinds):
        self._thread_state().failures = kinds

    def _thread_state(self) -> threading.local:
        with _LOCK:
            return self.__dict__.setdefault("_per_thread", threading.local())

    @abc.abstractmethod
    def evaluate(self, question: rubric.Question, conversations: list[list[dict]]) -> np.ndarray:
        """Judge each conversation. For two-answer questions (agreement, preference) the value is
        the probability of the first answer; for CA_SCORE it is the score in [0, 5]. A judge that
        can fail returns NaN there and sets `last_failures`: each sample's failure kind (e.g.
        "timeout", "http_500", "unreadable") or None."""

    def _judged(self, question: rubric.Question, conversations: list[list[dict]]) -> np.ndarray:
        """`evaluate`, counted: every sample is a call, every NaN a failure of its kind."""
        self.last_failures = [None] * len(conversations)
        values = self.evaluate(question, conversations)
        failures = self.last_failures
        with _LOCK:
            counts = self.__dict__.setdefault("_counts", collections.Counter())
            counts["calls"] += len(conversations)
            for i, value in enumerate(values):
                if np.isnan(value):
                    failures[i] = failures[i] or "unknown"
                    counts[failures[i]] += 1
        return values

    def counts(self) -> collections.Counter:
        """Samples judged so far ("calls") and failures by kind, for per-step deltas."""
        return collections.Counter(getattr(self, "_counts", {}))

    def agreement(self, dilemmas, personas, recent_turns) -> np.ndarray:
        """P(the agents agree on the core solution), one per dialogue.

        dilemmas: [N] str; personas: [N] lists of Persona or dict; recent_turns: [N] lists of
        (speaker_name, text).
        """
        _check_same_length(dilemmas=dilemmas, personas=personas, recent_turns=recent_turns)
        return self._judged(rubric.AGREEMENT, [
            rubric.agreement_messages(d, p, t)
            for d, p, t in zip(dilemmas, personas, recent_turns)])

    def ca_score(self, dilemmas, personas, solutions) -> np.ndarray:
        """Collective-Agency score in [0, 5] of each final solution."""
        _check_same_length(dilemmas=dilemmas, personas=personas, solutions=solutions)
        return self._judged(rubric.CA_SCORE, [
            rubric.ca_score_messages(d, p, s) for d, p, s in zip(dilemmas, personas, solutions)])

    def prefer(self, questions, answers_a, answers_b) -> np.ndarray:
        """P(answer A expands Collective Agency more than answer B)."""
        _check_same_length(questions=questions, answers_a=answers_a, answers_b=answers_b)
        return self._judged(rubric.PREFERENCE, [
            rubric.preference_messages(q, a, b)
            for q, a, b in zip(questions, answers_a, answers_b)])

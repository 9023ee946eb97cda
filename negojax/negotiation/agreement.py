"""Agreement checks run after every turn. Any callable `(states: list[DialogueState]) -> bool
array` plugs in; the two built-ins are the judge and the explicit marker. Both wait until every
seat has spoken, because agreement means every party accepts the latest proposal."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from negojax.negotiation.records import DialogueState

AgreementFn = Callable[[Sequence[DialogueState]], np.ndarray]


class MarkerAgreement:
    """Agreed when every seat's latest turn carries the marker."""

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self, states: Sequence[DialogueState]) -> np.ndarray:
        out = np.zeros(len(states), bool)
        for i, state in enumerate(states):
            latest = state.latest_turns()
            out[i] = latest is not None and all(self.marker in t.text for t in latest)
        return out


class JudgeAgreement:
    """Agreed when judge.agreement(...) on every seat's latest turn reaches the threshold (one
    batched judge call; a failed judgement is NaN and counts as not agreed)."""

    def __init__(self, judge, threshold: float):
        self.judge = judge
        self.threshold = threshold

    def __call__(self, states: Sequence[DialogueState]) -> np.ndarray:
        out = np.zeros(len(states), bool)
        ready = [(i, latest) for i, s in enumerate(states)
                 if (latest := s.latest_turns()) is not None]
        if not ready:
            return out
        probs = np.asarray(self.judge.agreement(
            [states[i].task.dilemma for i, _ in ready],
            [list(states[i].task.personas) for i, _ in ready],
            [[(states[i].name(t.speaker), t.text) for t in latest] for i, latest in ready]),
            np.float64)
        with np.errstate(invalid="ignore"):
            out[[i for i, _ in ready]] = probs >= self.threshold
        return out


def agreement_check(mode: str, *, judge=None, threshold: float = 0.5,
                    marker: str = "[AGREE]") -> AgreementFn:
    if mode == "marker":
        return MarkerAgreement(marker)
    if judge is None:
        raise ValueError("negotiation.agreement='judge' needs a judge: pass judge= to the engine "
                         "or set negotiation.agreement='marker'")
    return JudgeAgreement(judge, threshold)

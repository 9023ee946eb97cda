"""Negotiation settings, checked once at the boundary so a bad value is a one-line error."""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Union

from negojax.negotiation.schedulers import SCHEDULERS

FIRST_SPEAKERS = ("fixed", "random")
AGREEMENT_MODES = ("judge", "marker")


@dataclasses.dataclass(frozen=True)
class NegotiationConfig:
    """Method defaults (docs/method.md): 7 turns, 2 messages of context, T=0.7 / top-p 0.95 for turns,
    T=0.1 / top-p 0.95 for Agent 1's final solution. first_speaker "fixed" lets Agent 1 (seat 0)
    open every dialogue; "random" draws the opener per dialogue from the rollout seed.
    max_rounds > 0 lets a dialogue of n parties take max_rounds * n turns instead of max_turns,
    so every party speaks (and can accept) whatever the party count.

    scheduler (negojax.negotiation.schedulers): "lockstep" decodes every running dialogue's turn
    together and checks agreement once per turn; "continuous" (negojax.negotiation.continuous) lets each dialogue advance on
    its own over decode_slots slots per model, decode_chunk steps per decode call, agreement
    checked as turns end (judge_workers > 0: in that many threads, for an HTTP judge), and
    prefix_cache_rows prompts per model kept on the device so later turns reuse their openings
    (0: off)."""
    max_turns: int = 7
    max_rounds: int = 0
    context_turns: Optional[int] = 2  # None: full history, continued in a sampler Session
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    final_temperature: float = 0.1
    final_top_p: float = 0.95
    final_max_new_tokens: int = 384
    first_speaker: str = "fixed"
    agreement: str = "judge"
    marker: str = "[AGREE]"
    agreement_threshold: float = 0.5
    train_on_final_solution: bool = False
    scheduler: str = "lockstep"
    decode_slots: int = 8
    decode_chunk: int = 16
    judge_workers: int = 0
    prefix_cache_rows: int = 16

    def __post_init__(self):
        def bad(key: str, value, need: str):
            raise ValueError(f"rollout.{key}: {value!r} {need}")

        for key in ("max_turns", "max_new_tokens", "final_max_new_tokens", "decode_slots",
                    "decode_chunk"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(key, value, "must be an integer >= 1")
        rounds = self.max_rounds
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 0:
            bad("max_rounds", rounds, "must be an integer >= 0 (0: max_turns limits the turns)")
        ctx = self.context_turns
        if ctx is not None and (not isinstance(ctx, int) or isinstance(ctx, bool) or ctx < 1):
            bad("context_turns", ctx, "must be an integer >= 1, or None for the full history")
        for key in ("temperature", "final_temperature"):
            if not 0 <= getattr(self, key) < float("inf"):
                bad(key, getattr(self, key), "must be a finite number >= 0 (0 means greedy)")
        for key in ("top_p", "final_top_p"):
            if not 0 < getattr(self, key) <= 1:
                bad(key, getattr(self, key), "must lie in (0, 1]")
        if self.first_speaker not in FIRST_SPEAKERS:
            bad("first_speaker", self.first_speaker, f"is not one of {', '.join(FIRST_SPEAKERS)}")
        if self.agreement not in AGREEMENT_MODES:
            bad("agreement", self.agreement, f"is not one of {', '.join(AGREEMENT_MODES)}")
        if self.agreement == "marker" and not (isinstance(self.marker, str)
                                               and self.marker.strip()):
            bad("marker", self.marker, "marker agreement needs a non-empty marker string")
        workers = self.judge_workers
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            bad("judge_workers", workers, "must be an integer >= 0 (0: the judge runs between "
                "decode steps)")
        rows = self.prefix_cache_rows
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            bad("prefix_cache_rows", rows, "must be an integer >= 0 (0: no prefix cache)")
        SCHEDULERS.get(self.scheduler)  # a name that resolves, or one line naming the key
        if self.scheduler == "continuous" and ctx is None:
            bad("scheduler", self.scheduler, "needs rollout.context_turns >= 1 (the full-history "
                "Session mode runs lockstep only)")
        if not 0 <= self.agreement_threshold <= 1:
            bad("agreement_threshold", self.agreement_threshold, "must lie in [0, 1]")

    def turn_limit(self, num_seats: int) -> int:
        """The most turns a dialogue of num_seats parties takes."""
        return self.max_rounds * num_seats if self.max_rounds else self.max_turns


def as_config(value: Union[NegotiationConfig, Mapping, None]) -> NegotiationConfig:
    """A NegotiationConfig from itself, None (defaults) or a mapping such as the run config's
    `rollout` section, whose other keys (group_size, opponent, ...) are not ours and are left
    to their owner (negojax.run.config checks them)."""
    if value is None:
        return NegotiationConfig()
    if isinstance(value, NegotiationConfig):
        return value
    known = [f.name for f in dataclasses.fields(NegotiationConfig)]
    return NegotiationConfig(**{k: value[k] for k in known if k in value})

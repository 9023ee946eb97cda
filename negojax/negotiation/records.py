"""What a rollout produces: dialogue states, per-seat training sequences and the Rollout."""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from negojax.data import Task


def message_text(tokenizer, tokens, finished: bool) -> str:
    """What the other seats read of a sampled message: without the stop token and, with
    thinking on, without the reasoning before `</think>` (reasoning templates drop it from past
    turns too)."""
    text = tokenizer.decode(list(tokens)[:-1] if finished else list(tokens))
    return text.split("</think>")[-1].strip()


@dataclasses.dataclass
class Turn:
    speaker: int                 # seat index; seat 0 is Agent 1
    text: str                    # decoded message, special tokens and surrounding space removed
    tokens: list[int]            # generated ids, the stop id included when hit
    policy_logp: np.ndarray      # sampler's temperature-1 log-probs of `tokens`
    hit_token_cap: bool          # ended on max_new_tokens, not on a stop id
    prompt: list[int] = dataclasses.field(default_factory=list)  # context_turns=int only


@dataclasses.dataclass
class DialogueState:
    """One running dialogue; agreement plug-ins read these."""
    task: Task
    prompt_index: int
    group_index: int
    first_speaker: int
    turns: list[Turn] = dataclasses.field(default_factory=list)
    agreed: bool = False
    agreement_turn: Optional[int] = None   # 1-based number of turns when agreement was found
    final: Optional[Turn] = None           # Agent 1's final solution (speaker 0)
    trained_seats: tuple = (0,)            # the seats the policy plays and trains

    @property
    def num_seats(self) -> int:
        return len(self.task.personas)

    def speaker(self, turn: int) -> int:
        """Round-robin from the first speaker."""
        return (self.first_speaker + turn) % self.num_seats

    def name(self, seat: int) -> str:
        return self.task.personas[seat].name

    def latest_turns(self) -> Optional[list[Turn]]:
        """Each seat's latest turn in dialogue order, or None while some seat has not spoken."""
        latest = {}  # speaker -> position of their latest turn
        for position, turn in enumerate(self.turns):
            latest[turn.speaker] = position
        if len(latest) < self.num_seats:
            return None
        # Positions, not Turn objects: turns hold numpy arrays, which do not compare.
        return [self.turns[i] for i in sorted(latest.values())]

    def record(self) -> dict:
        """The transcript record: one line of transcripts.jsonl, read by the viewer and the report."""
        return {
            "scenario_id": self.task.id, "group": self.task.group, "tier": self.task.tier,
            "dilemma": self.task.dilemma, "personas": [p.name for p in self.task.personas],
            "first_speaker": self.first_speaker, "policy_seats": list(self.trained_seats),
            "turns": [{"speaker": t.speaker, "persona": self.name(t.speaker), "text": t.text,
                       "num_tokens": len(t.tokens), "hit_token_cap": t.hit_token_cap}
                      for t in self.turns],
            "agreed": self.agreed, "agreement_turn": self.agreement_turn,
            "final_solution": None if self.final is None else self.final.text,
            "prompt_index": self.prompt_index, "group_index": self.group_index,
        }


@dataclasses.dataclass
class TrainSequence:
    """The tokens one trainable seat saw and produced. loss_mask is True exactly on tokens that
    seat generated (final-solution tokens only with train_on_final_solution); old_logp holds the
    sampler's temperature-1 log-probs there and 0 elsewhere; agent / turn give the seat and the
    0-based dialogue turn of every generated token and -1 on every other token (the final
    solution's turn index is the number of dialogue turns)."""
    tokens: np.ndarray           # int32 [T]
    loss_mask: np.ndarray        # bool [T]
    old_logp: np.ndarray         # float32 [T]
    agent: np.ndarray            # int32 [T]
    turn: np.ndarray             # int32 [T]
    prompt_index: int
    group_index: int
    seat: int


class SequenceBuilder:
    """Accumulates a TrainSequence piece by piece: context tokens, then generated tokens."""

    def __init__(self):
        self.tokens, self.mask, self.logp, self.agent, self.turn = [], [], [], [], []

    def context(self, ids) -> None:
        n = len(ids)
        self.tokens += list(ids)
        self.mask += [False] * n
        self.logp += [0.0] * n
        self.agent += [-1] * n
        self.turn += [-1] * n

    def generated(self, ids, logp, seat: int, turn: int, trained: bool = True) -> None:
        n = len(ids)
        self.tokens += list(ids)
        self.mask += [trained] * n
        self.logp += list(np.asarray(logp, np.float32)) if trained else [0.0] * n
        self.agent += [seat] * n
        self.turn += [turn] * n

    @property
    def has_generated(self) -> bool:
        return any(self.mask)

    def generated_from(self, position: int) -> bool:
        """Whether any token at `position` or later was generated (and trained)."""
        return any(self.mask[position:])

    def truncate(self, length: int) -> None:
        for part in (self.tokens, self.mask, self.logp, self.agent, self.turn):
            del part[length:]

    def build(self, prompt_index: int, group_index: int, seat: int) -> TrainSequence:
        return TrainSequence(np.asarray(self.tokens, np.int32), np.asarray(self.mask, bool),
                             np.asarray(self.logp, np.float32), np.asarray(self.agent, np.int32),
                             np.asarray(self.turn, np.int32), prompt_index, group_index, seat)


@dataclasses.dataclass
class Rollout:
    dialogues: list[dict]             # transcript records, P*G, index p*G + g
    sequences: list[TrainSequence]
    agreed: np.ndarray                # bool [P, G]
    rounds: np.ndarray                # int32 [P, G]: turns taken
    final_solutions: list[Optional[str]]  # P*G, p-major
    stats: dict

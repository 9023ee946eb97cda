"""The Environment interface: what a negotiation game supplies to the engine, the trainer and the
evaluation.

An environment owns its tasks (by split), what each seat reads (its system prompt and the opening
message every seat sees), how agreement is decided, whether the first seat writes a final solution
afterwards, the collective reward of a finished dialogue and its own per-dialogue metrics. The
turn loop, GRPO and the reports are the same for every environment.

A subclass implements `tasks`, `system_prompt` and `score`; the defaults of the rest are the
paper's: the dilemma as the opening message, the configured agreement check (judge or marker),
and the final solution prompt of `negojax.negotiation.prompts`.
"""
from __future__ import annotations

import abc
from typing import Optional, Sequence

import numpy as np

from negojax.data import Task
from negojax.negotiation import prompts
from negojax.negotiation.agreement import AgreementFn, agreement_check
from negojax.negotiation.records import DialogueState

SPLITS = ("train", "eval")


class Environment(abc.ABC):
    """A negotiation game. `reward_name` names the collective reward in logs and transcripts;
    `judged` says whether a judge scores the final solution (the evaluation then runs the judge's
    suite: CA scores, win rates, calibration) or the environment computes the outcome itself (the
    evaluation reports `metrics` with bootstrap intervals)."""

    name: str = "custom"
    reward_name: str = "reward"
    judged: bool = False
    # Metrics that are rates of 0/1 outcomes: their intervals are Wilson's, which has width at
    # 0 and 1, where a bootstrap of identical outcomes has none.
    rate_metrics: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config) -> "Environment":
        """The environment of a run; built-ins read their `env.*` and `data.*` keys, a custom
        environment with no arguments needs nothing from the config."""
        del config
        return cls()

    # ---------------------------------------------------------------- tasks
    @abc.abstractmethod
    def tasks(self, split: str) -> list[Task]:
        """The tasks of "train" or "eval" (each with 2 or more personas, one per seat)."""

    # ---------------------------------------------------------------- what seats read
    @abc.abstractmethod
    def system_prompt(self, task: Task, seat: int) -> str:
        """What seat `seat` plays (its persona is task.personas[seat]) and how it should act."""

    def opening_message(self, task: Task) -> str:
        """The first user message every seat reads: the situation."""
        return prompts.dilemma_message(task.dilemma)

    # ---------------------------------------------------------------- agreement and outcome
    def agreement(self, negotiation_config, judge) -> AgreementFn:
        """The check run after every turn: by default the configured judge or marker check."""
        cfg = negotiation_config
        return agreement_check(cfg.agreement, judge=judge, threshold=cfg.agreement_threshold,
                               marker=cfg.marker)

    def final_solution_messages(self, state: DialogueState) -> Optional[list[dict]]:
        """The chat from which seat 0 writes the final solution once the dialogue ends; None
        when the dialogue itself is the outcome (no final solution is written)."""
        return prompts.final_solution_messages(
            state.task.dilemma, state.task.personas,
            [(state.name(t.speaker), t.text) for t in state.turns], state.agreed)

    @abc.abstractmethod
    def score(self, judge, tasks: Sequence[Task], rollout, group_size: int
              ) -> tuple[np.ndarray, list]:
        """The collective reward [P, G] of each dialogue of `rollout` (tasks[p]'s dialogue g at
        index p*G + g), NaN where it could not be computed (a failed judge call), and each
        dialogue's failure kind (P*G, None where it was scored). Only agreed dialogues earn it:
        the trainer gives 0 without agreement."""

    def potentials(self, tasks: Sequence[Task], dialogues: Sequence[dict]
                   ) -> Optional[list[list[float]]]:
        """For rl.credit=turn: each dialogue's potential after each of its turns, in the reward's
        units (what the dialogue would be worth if it ended there well; negojax.rl.credit shapes
        turn rewards from its changes). None: no per-turn signal, so turn credit gives each turn
        index its own baseline over the outcome alone."""
        del tasks, dialogues
        return None

    def seat_utilities(self, tasks: Sequence[Task], dialogues: Sequence[dict]
                       ) -> Optional[np.ndarray]:
        """Each seat's own utility of each dialogue's outcome [dialogues, seats] (NaN for a seat
        a game does not have; 0 without a deal), on the collective reward's scale, for the
        reward modes that pay a seat its own (reward.mode own and mixed). None: the environment
        has no per-seat outcome (a judge scores one solution for all), and those modes are
        refused for it."""
        del tasks, dialogues
        return None

    @classmethod
    def pays_each_seat(cls) -> bool:
        """Whether `seat_utilities` gives per-seat outcomes (the class overrides it)."""
        return cls.seat_utilities is not Environment.seat_utilities

    def reference_metrics(self, tasks: Sequence[Task]) -> dict[str, dict[str, list[float]]]:
        """Reference policies a model's `metrics` are read against ({policy: {metric: one value
        per task}}): outcomes computed from the tasks alone, such as take-all or an even split
        of a resource split. None by default (an empty dict)."""
        del tasks
        return {}

    def metrics(self, tasks: Sequence[Task], dialogues: Sequence[dict]) -> dict[str, list[float]]:
        """The environment's own per-dialogue measurements (NaN where one does not apply), one
        list per metric over `dialogues` (transcript records; tasks[i] is dialogue i's task).
        The trainer logs their means, the evaluation their means with intervals."""
        del tasks, dialogues
        return {}


def overlong_opening(env: Environment, tasks: Sequence[Task], tokenizer, limit: int
                     ) -> Optional[tuple[Task, int, int]]:
    """(task, seat, tokens) of the first seat whose opening prompt (its system prompt and the
    opening message, chat-templated) is longer than `limit` tokens; None when every one fits.

    Tokenizing every seat of thousands of tasks takes seconds, so only a prompt that could be too
    long is: a token covers at least one byte of text, so a prompt is at most its text's bytes
    plus the template's own tokens, counted around one-character messages (which also covers the
    prefix token a SentencePiece tokenizer may add to each message)."""
    frame = len(tokenizer.apply_chat_template(prompts.seat_messages("x", "x", [], 0), True))
    for task in tasks:
        opening = env.opening_message(task)
        for seat in range(len(task.personas)):
            messages = prompts.seat_messages(env.system_prompt(task, seat), opening, [], seat)
            if frame + sum(len(m["content"].encode()) for m in messages) <= limit:
                continue
            tokens = len(tokenizer.apply_chat_template(messages, True))
            if tokens > limit:
                return task, seat, tokens
    return None

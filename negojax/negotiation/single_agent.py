"""The single-agent baseline's rollout: one answer per sample, no dialogue.

For each task the policy reads ONE prompt (`prompts.single_agent_messages`: the dilemma and every
persona's view) and samples G answers in one batched sampler call. The answer stands where the
negotiation's final solution stands: the judge scores it for Collective Agency as it scores a
final solution, and it is always scored (`agreed` is True, `rounds` 1). The answer's tokens are
the TrainSequence (seat 0, turn 0), so advantages, packing and the train step are the
negotiation's. A transcript record has one turn, the answer, which is also its final solution.

The answer is sampled at `rollout.temperature` / `top_p` (greedy when the engine is built
greedy) up to `rollout.final_max_new_tokens`, a solution's length.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import numpy as np

from negojax.data import Task
from negojax.models.config import ModelConfig
from negojax.negotiation import prompts
from negojax.negotiation.config import NegotiationConfig, as_config
from negojax.negotiation.engine import MODES, derived_seed, sampled_turn
from negojax.negotiation.records import DialogueState, Rollout, SequenceBuilder
from negojax.sampling import SamplingParams, sample

SETTINGS = ("negotiation", "single_agent")
SINGLE_AGENT = "single agent"  # who wrote the answer, in the transcript


class SingleAgentEngine:
    """A rollout source with NegotiationEngine's `rollout_tasks` signature; the seat arguments
    (opponent, policy_seats) are accepted and unused: there is one seat, the policy's."""

    def __init__(self, config, model_config: ModelConfig, tokenizer, *, rules=None,
                 sample_fn: Callable = sample):
        self.config: NegotiationConfig = as_config(config)
        self.model_config = model_config
        self.tokenizer = tokenizer
        self.rules = rules
        self.sample_fn = sample_fn

    def rollout_tasks(self, tasks: Sequence[Task], *, group_size: int, policy, opponent=None,
                      policy_seats="first", seed: int, mode: str,
                      progress: Optional[Callable[[str], None]] = None) -> Rollout:
        if mode not in MODES:
            raise ValueError(f"rollout mode={mode!r}: must be one of {MODES}")
        if not tasks:
            raise ValueError("rollout: no tasks given; pass at least one Task")
        unseated = [t.id for t in tasks if not t.personas]
        if unseated:
            raise ValueError(f"tasks {unseated[:3]} have no personas; the single-agent answer "
                             "needs every party's view")
        del opponent, policy_seats  # one seat: the policy's
        cfg, G = self.config, group_size
        if progress:
            progress(f"single-agent answers ({len(tasks) * G})")
        states = [DialogueState(task, p, g, 0) for p, task in enumerate(tasks) for g in range(G)]
        prompt_ids = [self.tokenizer.apply_chat_template(
            prompts.single_agent_messages(s.task.dilemma, s.task.personas), True) for s in states]
        start = time.perf_counter()
        out = self.sample_fn(policy, self.model_config, prompt_ids,
                             max_new_tokens=cfg.final_max_new_tokens,
                             sampling=SamplingParams(cfg.temperature, cfg.top_p),
                             stop_ids=list(self.tokenizer.stop_ids),
                             seed=derived_seed(seed, 0, 0), rules=self.rules)
        elapsed = time.perf_counter() - start
        sequences = []
        for k, s in enumerate(states):
            answer = sampled_turn(self.tokenizer, 0, out.tokens[k], out.policy_logp[k],
                                  out.finished[k], prompt_ids[k])
            s.turns.append(answer)
            s.final, s.agreed, s.agreement_turn = answer, True, 1
            seq = SequenceBuilder()
            seq.context(answer.prompt)
            seq.generated(answer.tokens, answer.policy_logp, 0, 0)
            sequences.append(seq.build(s.prompt_index, s.group_index, 0))
        P = len(tasks)
        return Rollout(
            dialogues=[_record(s) for s in states],
            sequences=sequences, agreed=np.ones((P, G), bool),
            rounds=np.ones((P, G), np.int32),
            final_solutions=[s.final.text for s in states],
            stats={"sampler_calls": 1,
                   "generated_tokens": sum(len(s.final.tokens) for s in states),
                   "time_generate_s": elapsed, "time_agreement_s": 0.0})


def _record(state: DialogueState) -> dict:
    """The transcript record, its one turn the answer: written by the policy for every party,
    so it is no persona's."""
    record = state.record()
    record["turns"] = [{**turn, "persona": SINGLE_AGENT} for turn in record["turns"]]
    return {**record, "setting": "single_agent"}

"""The paper's setting: personas deliberate over a value conflict; a judge decides agreement and
scores the agreed final solution for Collective Agency (CA).

Tasks come from the shipped scenarios, or from a user's directory (`data.dir`: train.jsonl and
eval.jsonl in the schema of docs/data.md). The open-ended questions of the evaluation's
pairwise comparison are always the shipped ones.
"""
from __future__ import annotations

from typing import Optional, Sequence

from negojax.data import Task, load_tasks
from negojax.environments.base import SPLITS, Environment
from negojax.negotiation import prompts
from negojax.rewards import score_final_solutions


class Deliberation(Environment):
    name = "deliberation"
    reward_name = "ca"
    judged = True

    def __init__(self, data_dir: Optional[str] = None, *, agreement: str = "judge",
                 marker: str = "[AGREE]"):
        """`agreement`, `marker`: the rollout's; the seats are told to write the marker only
        under marker agreement."""
        self.data_dir = data_dir or None
        self.marker = marker if agreement == "marker" else None
        self._tasks: dict[str, list[Task]] = {}

    @classmethod
    def from_config(cls, config) -> "Deliberation":
        r = config.rollout
        return cls(data_dir=config.data.dir, agreement=r.agreement, marker=r.marker)

    def tasks(self, split: str) -> list[Task]:
        """"train" and "eval" from `data_dir` (else the shipped scenarios); "open_ended" shipped."""
        if split not in self._tasks:
            where = self.data_dir if split in SPLITS else None
            self._tasks[split] = load_tasks(split, resources_dir=where)
        return self._tasks[split]

    def system_prompt(self, task: Task, seat: int) -> str:
        return prompts.system_prompt(task.personas[seat],
                                     [p for k, p in enumerate(task.personas) if k != seat],
                                     self.marker)

    def score(self, judge, tasks: Sequence[Task], rollout, group_size: int):
        return score_final_solutions(judge, tasks, rollout.final_solutions, group_size)

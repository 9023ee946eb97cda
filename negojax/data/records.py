"""Task records handed to the negotiation engine: a dilemma plus the personas that argue over it."""
from __future__ import annotations

import dataclasses

TIERS = ("professional", "interpersonal", "everyday")
OPEN_ENDED_TIER = "open_ended"
SPLITS = ("train", "eval", "open_ended")
PERSONA_FIELDS = ("name", "core_value", "wants", "fears", "style", "id")


@dataclasses.dataclass(frozen=True)
class Persona:
    """A party to a dilemma. Only name and core_value are required: a user's own tasks may leave the
    rest out, and prompts then leave out their lines. `id` names a shipped persona; user tasks have none."""
    name: str
    core_value: str
    wants: str = ""
    fears: str = ""
    style: str = ""  # negotiation style, one sentence
    id: str = ""


@dataclasses.dataclass(frozen=True)
class Task:
    """One scenario. For the open_ended split `dilemma` holds the question, tier is "open_ended",
    personas is () and group is "". In a user task directory tier is free text too, "" when absent."""
    id: str
    split: str
    tier: str
    dilemma: str
    personas: tuple[Persona, ...]
    group: str  # shipped: id of the persona pair or set assigned to this dilemma; user tasks: free text or ""
    # An environment's own fields (resource_split: the pool and each party's values).
    details: dict = dataclasses.field(default_factory=dict, compare=False)

"""Task records handed to the negotiation engine: a dilemma plus the personas that argue over it."""
from __future__ import annotations

import dataclasses

TIERS = ("professional", "interpersonal", "everyday")
OPEN_ENDED_TIER = "open_ended"
SPLITS = ("train", "eval", "open_ended")
PERSONA_FIELDS = ("id", "name", "core_value", "wants", "fears", "style")


@dataclasses.dataclass(frozen=True)
class Persona:
    id: str
    name: str
    core_value: str
    wants: str
    fears: str
    style: str  # negotiation style, one sentence


@dataclasses.dataclass(frozen=True)
class Task:
    """One scenario. For the open_ended split `dilemma` holds the question, tier is "open_ended",
    personas is () and group is ""."""
    id: str
    split: str
    tier: str
    dilemma: str
    personas: tuple[Persona, ...]
    group: str  # id of the persona pair or persona set assigned to this dilemma

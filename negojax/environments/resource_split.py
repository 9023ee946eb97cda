"""A negotiation whose reward is computed, not judged: the parties divide a pool of items.

Each party knows only its own values (negojax.environments.resource_games). They talk in natural
language, and each message ends with one action line the environment parses:

  PROPOSAL: Alex gets 2 books, 0 hats, 1 ball; Blair gets 0 books, 1 hat, 2 balls
  ACCEPT

A proposal names what each party gets; an unnamed kind is 0, and a single party left unnamed gets
what the others leave. ACCEPT takes the latest proposal another party made. Each party's stance is
its latest message's action; the parties agree when every stance is the same allocation. The
collective reward is the deal's welfare (`welfare` nash or sum, normalised by the best achievable,
so in [0, 1]); no agreement earns 0. A message cut off at the token cap loses its last line (it may
be unfinished). A message with neither a readable proposal nor an ACCEPT of one counts as
unparsable.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np

from negojax.data import Persona, Task
from negojax.environments.base import SPLITS, Environment
from negojax.environments.reference_policies import reference_allocations
from negojax.environments.resource_games import (ITEM_KINDS, TOTAL_VALUE, WELFARES, Game,
                                                 pareto_optimal, split_games, welfare)
from negojax.negotiation.records import DialogueState

PARTY_NAMES = ("Alex", "Blair", "Casey", "Drew")
PARTY_COUNTS = (2, 3, 4)
_PROPOSAL = re.compile(r"PROPOSAL\s*:?(.*)", re.IGNORECASE)
_ACCEPT = re.compile(r"\bACCEPT\b")
_ITEM = {kind: re.compile(rf"(\d+)\s*{kind}s?\b", re.IGNORECASE) for kind in ITEM_KINDS}


def _items(counts: Sequence[int]) -> str:
    return ", ".join(f"{c} {kind}{'s' if c != 1 else ''}" for c, kind in zip(counts, ITEM_KINDS))


def game_of(task: Task) -> Game:
    d = task.details
    return Game(tuple(d["counts"]), tuple(tuple(v) for v in d["values"]))


def game_task(game: Game, split: str, index: int) -> Task:
    names = PARTY_NAMES[:game.parties]
    return Task(
        id=f"resource-{split}-{index:05d}", split=split, tier=f"{game.parties}-party",
        dilemma=(f"Items on the table: {_items(game.counts)}. {', '.join(names[:-1])} and "
                 f"{names[-1]} must divide all of them; an item cannot be split."),
        personas=tuple(Persona(name=n, core_value="the items you value most") for n in names),
        group="resource_split",
        details={"counts": list(game.counts), "values": [list(v) for v in game.values]})


def complete(text: str, cut_off: bool) -> str:
    """What a message says for certain: one cut off at the token cap loses its last line, which
    may be unfinished (read, "Alex gets 1 book, 1 hat, 2" would hand the leftovers to the other
    party: the policy learns to be cut off where that pays)."""
    return text.rpartition("\n")[0] if cut_off else text


def parse_proposal(text: str, game: Game) -> Optional[np.ndarray]:
    """The allocation [parties, kinds] on the message's last PROPOSAL line, or None when it
    names no party, names an item count the pool does not hold, or does not divide the pool."""
    lines = [m.group(1) for m in map(_PROPOSAL.search, text.splitlines()) if m]
    if not lines:
        return None
    names = PARTY_NAMES[:game.parties]
    found = [(m.start(), p) for p, name in enumerate(names)
             for m in re.finditer(rf"\b{name}\b", lines[-1])]
    if not found:
        return None
    found.sort()
    allocation = np.zeros((game.parties, len(ITEM_KINDS)), np.int64)
    named = set()
    for k, (start, party) in enumerate(found):
        end = found[k + 1][0] if k + 1 < len(found) else len(lines[-1])
        if party in named:
            return None
        named.add(party)
        for kind, pattern in enumerate(_ITEM.values()):
            counts = [int(m.group(1)) for m in pattern.finditer(lines[-1], start, end)]
            if len(counts) > 1:
                return None
            allocation[party, kind] = counts[0] if counts else 0
    left = np.asarray(game.counts) - allocation.sum(0)
    unnamed = [p for p in range(game.parties) if p not in named]
    if len(unnamed) == 1:
        allocation[unnamed[0]] = left
    elif unnamed or np.any(left):
        return None
    return allocation if np.all(allocation >= 0) and np.all(
        allocation.sum(0) == game.counts) else None


def stances(game: Game, turns: Sequence[tuple[int, str]]) -> list[Optional[np.ndarray]]:
    """Each message's allocation: its own proposal, else (ACCEPT) the latest proposal another
    party made before it, else None."""
    out, proposals = [], []  # proposals: (speaker, allocation) in dialogue order
    for speaker, text in turns:
        proposal = parse_proposal(text, game)
        if proposal is not None:
            proposals.append((speaker, proposal))
            out.append(proposal)
        elif _ACCEPT.search(text):
            standing = [a for s, a in proposals if s != speaker]
            out.append(standing[-1] if standing else None)
        else:
            out.append(None)
    return out


def deal(game: Game, turns: Sequence[tuple[int, str]]) -> Optional[np.ndarray]:
    """The allocation every party's latest message stands for, or None."""
    latest = {}
    for (speaker, _), stance in zip(turns, stances(game, turns)):
        latest[speaker] = stance
    if len(latest) < game.parties or any(s is None for s in latest.values()):
        return None
    first = next(iter(latest.values()))
    return first if all(np.array_equal(first, s) for s in latest.values()) else None


class ResourceSplit(Environment):
    name = "resource_split"
    reward_name = "welfare"
    judged = False
    rate_metrics = ("agreement", "pareto_optimal", "one_sided")

    def __init__(self, *, welfare_kind: str = "nash", parties: Sequence[int] = (2,),
                 train_tasks: int = 4000, eval_tasks: int = 500, seed: int = 0):
        if welfare_kind not in WELFARES:
            raise ValueError(f"env.welfare: {welfare_kind!r} is not one of {', '.join(WELFARES)}")
        bad = [n for n in parties if n not in PARTY_COUNTS]
        if not parties or bad:
            raise ValueError(f"env.parties: {list(parties)} must list party counts from "
                             f"{', '.join(map(str, PARTY_COUNTS))}")
        self.welfare_kind = welfare_kind
        self.parties = tuple(parties)
        self.sizes = {"train": train_tasks, "eval": eval_tasks}
        self.seed = seed
        self._tasks: Optional[dict[str, list[Task]]] = None

    @classmethod
    def from_config(cls, config) -> "ResourceSplit":
        e = config.env
        return cls(welfare_kind=e.welfare, parties=tuple(e.parties), train_tasks=e.train_tasks,
                   eval_tasks=e.eval_tasks, seed=e.seed)

    def tasks(self, split: str) -> list[Task]:
        if split not in SPLITS:
            raise ValueError(f"resource_split has splits {', '.join(SPLITS)}, not {split!r}")
        if self._tasks is None:
            games = split_games(self.seed, self.parties, self.sizes)
            self._tasks = {s: [game_task(g, s, i) for i, g in enumerate(games[s])]
                           for s in SPLITS}
        return self._tasks[split]

    def system_prompt(self, task: Task, seat: int) -> str:
        game = game_of(task)
        names = [p.name for p in task.personas]
        me, others = names[seat], [n for k, n in enumerate(names) if k != seat]
        worth = ", ".join(f"{kind} {v}" for kind, v in zip(ITEM_KINDS, game.values[seat]))
        # The format shown on this seat's own claim to everything: copying it verbatim never
        # agrees with the others' copies, so a deal takes a real offer or an ACCEPT.
        shares = [game.counts if k == seat else (0,) * len(game.counts)
                  for k in range(game.parties)]
        example = "; ".join(f"{n} gets {_items(c)}" for n, c in zip(names, shares))
        return (f"You are {me}. You and {' and '.join(others)} split these items: "
                f"{_items(game.counts)}. Your points per item: {worth} (all items together are "
                f"worth {TOTAL_VALUE} points to you). The others' points are secret.\n"
                "Find a deal that is good for everyone. Reply with one short sentence, then a "
                "last line in exactly this form, with your own numbers:\n"
                f"PROPOSAL: {example}\n"
                "or the single word ACCEPT to agree to the latest proposal.")

    def opening_message(self, task: Task) -> str:
        return (f"{task.dilemma} If nobody has spoken yet, open with a proposal; otherwise reply "
                "to the latest message. End with your PROPOSAL line, or ACCEPT.")

    def agreement(self, negotiation_config, judge):
        del negotiation_config, judge  # the parser decides

        def agreed(states: Sequence[DialogueState]) -> np.ndarray:
            return np.asarray([deal(game_of(s.task), [(t.speaker, complete(t.text, t.hit_token_cap))
                                                      for t in s.turns]) is not None
                               for s in states], bool)
        return agreed

    def final_solution_messages(self, state: DialogueState):
        return None  # the deal is the outcome

    def outcome(self, task: Task, record: dict) -> dict[str, float]:
        """One dialogue's measurements from its transcript record."""
        game = game_of(task)
        turns = [(t["speaker"], complete(t["text"], t.get("hit_token_cap", False)))
                 for t in record["turns"]]
        readable = [s is not None for s in stances(game, turns)]
        return {**self.deal_metrics(game, deal(game, turns)),
                "unparsable_rate": (1.0 - float(np.mean(readable))) if turns else float("nan")}

    def deal_metrics(self, game: Game, allocation: Optional[np.ndarray]) -> dict[str, float]:
        """What a deal (None: no deal) is worth: agreement, welfare (the run's kind and both),
        Pareto optimality and one-sidedness (some party gets nothing; NaN without a deal), each
        seat's utility as a share of its points."""
        utilities = (np.zeros(game.parties) if allocation is None
                     else game.utilities(allocation) / TOTAL_VALUE)
        welfares = {kind: 0.0 if allocation is None else welfare(game, allocation, kind)
                    for kind in WELFARES}
        row = {"agreement": float(allocation is not None),
               "welfare": welfares[self.welfare_kind],
               **{f"welfare_{kind}": w for kind, w in welfares.items()},
               "pareto_optimal": (float("nan") if allocation is None
                                  else float(pareto_optimal(game, allocation))),
               "one_sided": float("nan") if allocation is None else float(utilities.min() == 0)}
        for seat in range(max(self.parties)):
            row[f"utility_seat{seat}"] = (float(utilities[seat]) if seat < game.parties
                                          else float("nan"))
        return row

    def seat_utilities(self, tasks, dialogues) -> np.ndarray:
        """Each seat's points of the deal / its points of the whole pool (0 without a deal)."""
        rows = [self.outcome(task, record) for task, record in zip(tasks, dialogues)]
        seats = max(self.parties)
        return np.asarray([[row[f"utility_seat{s}"] for s in range(seats)] for row in rows],
                          np.float64).reshape(len(rows), seats)

    def reference_metrics(self, tasks: Sequence[Task]) -> dict[str, dict[str, list[float]]]:
        """Each reference policy's measurements on each task, as `metrics` gives a model's
        (negojax.environments.reference_policies; uniform_random's are the mean over its
        allocations). The policies impose their deal, so their agreement is 1. A policy a game
        has no seat for (take_all_seat3 of a 2-party game) is NaN there."""
        per_task = []
        for task in tasks:
            game = game_of(task)
            per_task.append({
                name: {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
                for name, rows in ((name, [self.deal_metrics(game, a) for a in allocations])
                                   for name, allocations in reference_allocations(
                                       game, self.welfare_kind).items())})
        names = list(dict.fromkeys(name for policies in per_task for name in policies))
        keys = list(self.deal_metrics(game_of(tasks[0]), None)) if tasks else []
        return {name: {key: [policies[name][key] if name in policies else float("nan")
                             for policies in per_task] for key in keys} for name in names}

    def score(self, judge, tasks, rollout, group_size: int):
        del judge
        welfare_ = [self.outcome(tasks[k // group_size], record)["welfare"]
                    for k, record in enumerate(rollout.dialogues)]
        return (np.asarray(welfare_, np.float64).reshape(len(tasks), group_size),
                [None] * len(welfare_))

    def potentials(self, tasks, dialogues):
        """After each turn, the welfare of the latest proposal on the table, as if every party
        took it (0 before any readable proposal)."""
        out = []
        for task, record in zip(tasks, dialogues):
            game, table, row = game_of(task), 0.0, []
            for t in record["turns"]:
                proposal = parse_proposal(complete(t["text"], t.get("hit_token_cap", False)), game)
                if proposal is not None:
                    table = welfare(game, proposal, self.welfare_kind)
                row.append(table)
            out.append(row)
        return out

    def metrics(self, tasks, dialogues):
        rows = [self.outcome(task, record) for task, record in zip(tasks, dialogues)]
        return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}

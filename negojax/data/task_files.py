"""A user's own tasks: a directory holding train.jsonl and eval.jsonl, one task per line.

  {"id": str, "dilemma": str, "personas": [persona, ... 2 to 4], "tier"?: str, "group"?: str}
  persona: {"name": str, "core_value": str, "wants"?: str, "fears"?: str, "style"?: str}

Each row carries its own personas, so nothing is cross-referenced as in the shipped layout
(scenarios.py); tier and group are free text, "" when absent. Persona names are distinct within a
task and task ids within the directory (an eval id reused in train would leak the held-out task).
Unknown keys are errors, so a misspelt optional field ("core_values") is never silently dropped.
Every problem is a one-line ValueError naming the file, the line and the field.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import pathlib

from negojax import storage
from negojax.data.lines import json_lines
from negojax.data.records import Persona, Task

SPLIT_FILES = {"train": "train.jsonl", "eval": "eval.jsonl"}
PARTIES = (2, 4)  # fewest and most personas a task may have


@dataclasses.dataclass(frozen=True)
class Schema:
    noun: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    def needs(self) -> str:
        *rest, last = self.required
        optional = f" ({', '.join(self.optional)} are optional)" if self.optional else ""
        return f"every {self.noun} needs {', '.join(rest)} and {last}{optional}"


TASK = Schema("task", ("id", "dilemma", "personas"), ("tier", "group"))
PERSONA = Schema("persona", ("name", "core_value"), ("wants", "fears", "style"))


def check_strings(where: str, prefix: str, obj, schema: Schema, lists: tuple[str, ...] = ()) -> dict[str, str]:
    """`obj`'s string fields, stripped, absent optional ones as "" (`lists` name the fields that hold
    lists, checked by the caller). `prefix` says which object of the line is meant, e.g. "personas[1] "."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: {prefix}expected a JSON object, got {type(obj).__name__}; {schema.needs()}")
    known = schema.required + schema.optional
    for key in obj:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"{where}: {prefix}unknown field '{key}'; {hint}a {schema.noun} has only "
                             f"{', '.join(known)}")
    values = {}
    for field in known:
        required = field in schema.required
        if field not in obj:
            if required:
                raise ValueError(f"{where}: {prefix}missing field '{field}'; {schema.needs()}")
            values[field] = ""
        elif field not in lists:
            value = obj[field]
            if not isinstance(value, str) or (required and not value.strip()):
                raise ValueError(f"{where}: {prefix}field '{field}' must be a {'non-empty ' if required else ''}"
                                 f"string, got {json.dumps(value)}; {schema.needs()}")
            values[field] = value.strip()
    return values


def check_personas(where: str, value, parties: tuple[int, int] = PARTIES) -> tuple[Persona, ...]:
    """The personas of a row's "personas" list: between parties[0] and parties[1] of them, distinct names."""
    low, high = parties
    count = f"{low} to {high}" if low != high else f"{low}"
    if not isinstance(value, list) or not low <= len(value) <= high:
        got = f"{len(value)} personas" if isinstance(value, list) else json.dumps(value)
        raise ValueError(f"{where}: field 'personas' must be a list of {count} persona objects, got {got}")
    personas, index_of = [], {}
    for index, obj in enumerate(value):
        persona = Persona(**check_strings(where, f"personas[{index}] ", obj, PERSONA))
        name = persona.name.casefold()
        if name in index_of:
            raise ValueError(f"{where}: personas[{index}] repeats the name '{persona.name}' of "
                             f"personas[{index_of[name]}]; give each persona of a task its own name")
        index_of[name] = index
        personas.append(persona)
    return tuple(personas)


def check_task(where: str, row, split: str) -> Task:
    fields = check_strings(where, "", row, TASK, lists=("personas",))
    return Task(id=fields["id"], split=split, tier=fields["tier"], dilemma=fields["dilemma"],
                personas=check_personas(where, row["personas"]), group=fields["group"])


def read_task_file(path: str | pathlib.Path, split: str, ids_at: dict[str, str]) -> list[Task]:
    """The tasks of one file in file order. `ids_at` maps each id seen so far (in this file or
    another of the directory) to where it was; this file's ids are added."""
    if not storage.isfile(str(path)):
        raise ValueError(f"{path}: file not found; a user task directory holds "
                         f"{' and '.join(SPLIT_FILES.values())}")
    tasks = []
    for where, _, row in json_lines(path):
        task = check_task(where, row, split)
        if task.id in ids_at:
            raise ValueError(f"{where}: id '{task.id}' is already used at {ids_at[task.id]}; give "
                             f"each task of the directory its own id")
        ids_at[task.id] = where
        tasks.append(task)
    if not tasks:
        raise ValueError(f"{path}: no tasks; add at least one task, one JSON object per line")
    return tasks


def load_task_files(root: str | pathlib.Path) -> dict[str, list[Task]]:
    """split -> tasks in file order, for the train and eval files of the user task directory `root`
    (a local folder or an object-store URL: a gs:// path would lose a slash to pathlib)."""
    ids_at = {}
    return {split: read_task_file(storage.join(str(root), name), split, ids_at)
            for split, name in SPLIT_FILES.items()}

"""Read and validate the scenario JSONL files (their schema is below).

Every check names the file and line and says what to fix, in one line, because these files are
edited by hand and by the generator; a traceback into the loader would not tell anyone which row broke.

  personas.jsonl       {"id", "name", "core_value", "wants", "fears", "style"}
  persona_pairs.jsonl  {"id", "personas": [2 persona ids], "conflict"}
  persona_sets.jsonl   {"id", "personas": [3 or 4 persona ids], "conflict"}
  dilemmas.jsonl       {"id", "tier", "dilemma", "group": pair or set id}        -> split "train"
  eval_tasks.jsonl     {"id", "tier", "dilemma", "group": pair or set id}        -> split "eval"
  open_ended.jsonl     {"id", "category", "question"}                            -> split "open_ended"
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Iterator

from negojax import storage
from negojax.data.lines import json_lines
from negojax.data.records import OPEN_ENDED_TIER, TIERS, Persona, Task

RESOURCES_DIR = pathlib.Path(__file__).parent / "resources"


@dataclasses.dataclass(frozen=True)
class RowKind:
    noun: str
    fields: tuple[str, ...]
    list_fields: tuple[str, ...] = ()

    def needs(self) -> str:
        return f"every {self.noun} needs {', '.join(self.fields)}"


# The curated shipped personas keep every field required.
PERSONA = RowKind("persona", ("id", "name", "core_value", "wants", "fears", "style"))
PAIR = RowKind("persona pair", ("id", "personas", "conflict"), list_fields=("personas",))
PERSONA_SET = RowKind("persona set", ("id", "personas", "conflict"), list_fields=("personas",))
DILEMMA = RowKind("dilemma", ("id", "tier", "dilemma", "group"))
QUESTION = RowKind("open-ended question", ("id", "category", "question"))

FILES = {
    "personas": ("personas.jsonl", PERSONA),
    "pairs": ("persona_pairs.jsonl", PAIR),
    "sets": ("persona_sets.jsonl", PERSONA_SET),
    "train": ("dilemmas.jsonl", DILEMMA),
    "eval": ("eval_tasks.jsonl", DILEMMA),
    "open_ended": ("open_ended.jsonl", QUESTION),
}
GROUP_SIZES = {"persona pair": (2,), "persona set": (3, 4)}


def check_row(where: str, row, kind: RowKind) -> dict:
    """The row as a dict with every field present and non-empty; else a one-line ValueError."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}; {kind.needs()}")
    for field in kind.fields:
        if field not in row:
            raise ValueError(f"{where}: missing field '{field}'; {kind.needs()}")
        value = row[field]
        if field in kind.list_fields:
            if not isinstance(value, list) or not value or not all(
                    isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"{where}: field '{field}' must be a non-empty list of ids, "
                                 f"got {json.dumps(value)}")
        elif not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: field '{field}' is empty or not a string; {kind.needs()}")
    return row


def read_rows(path: pathlib.Path, kind: RowKind) -> Iterator[tuple[str, dict]]:
    """(where, row) for each non-blank line, where = "<path> line <n>"; ids unique within the file."""
    first_line_of = {}
    for where, lineno, row in json_lines(path):
        check_row(where, row, kind)
        if row["id"] in first_line_of:
            raise ValueError(f"{where}: duplicate id '{row['id']}' (first on line "
                             f"{first_line_of[row['id']]}); give this {kind.noun} a new id")
        first_line_of[row["id"]] = lineno
        yield where, row


def read_nonempty(path: pathlib.Path, kind: RowKind) -> list[tuple[str, dict]]:
    rows = list(read_rows(path, kind))
    if not rows:
        raise ValueError(f"{path}: no rows; add at least one {kind.noun}, one JSON object per line")
    return rows


def to_persona(row: dict) -> Persona:
    return Persona(**{field: row[field].strip() for field in PERSONA.fields})


def check_group(where: str, row: dict, kind: RowKind, personas: dict[str, Persona]) -> tuple[str, ...]:
    """The persona ids of a pair/set row, checked for size, repeats and unknown ids."""
    ids = tuple(row["personas"])
    sizes = GROUP_SIZES[kind.noun]
    if len(ids) not in sizes or len(set(ids)) != len(ids):
        want = " or ".join(map(str, sizes))
        raise ValueError(f"{where}: a {kind.noun} lists {want} distinct persona ids, got {list(ids)}")
    for persona_id in ids:
        if persona_id not in personas:
            raise ValueError(f"{where}: unknown persona '{persona_id}'; add it to personas.jsonl "
                             f"or use one of its ids")
    return ids


def check_dilemma(where: str, row: dict, groups: dict[str, tuple[str, ...]], group_files: str) -> None:
    if row["tier"] not in TIERS:
        raise ValueError(f"{where}: unknown tier '{row['tier']}'; use one of {', '.join(TIERS)}")
    if row["group"] not in groups:
        raise ValueError(f"{where}: unknown group '{row['group']}'; use an id from {group_files}")


@dataclasses.dataclass(frozen=True)
class Scenarios:
    personas: dict[str, Persona]
    groups: dict[str, tuple[str, ...]]  # pair and set ids -> persona ids
    conflicts: dict[str, str]           # pair and set ids -> their conflict line
    tasks: dict[str, list[Task]]        # split -> tasks in file order


def load_scenarios(resources_dir: str | pathlib.Path | None = None) -> Scenarios:
    """Read and cross-check all six files of `resources_dir` (default: the shipped resources)."""
    root = str(resources_dir if resources_dir is not None else RESOURCES_DIR)
    paths = {key: storage.join(root, name) for key, (name, _) in FILES.items()}
    for path in paths.values():
        if not storage.isfile(path):
            raise ValueError(f"{path}: file not found; the scenario data needs all of "
                             f"{', '.join(name for name, _ in FILES.values())} in {root}")

    personas = {}
    for _, row in read_nonempty(paths["personas"], PERSONA):
        personas[row["id"]] = to_persona(row)

    groups, conflicts, group_line = {}, {}, {}
    for key in ("pairs", "sets"):
        for where, row in read_nonempty(paths[key], FILES[key][1]):
            if row["id"] in groups:
                raise ValueError(f"{where}: group id '{row['id']}' is already used at "
                                 f"{group_line[row['id']]}; pair and set ids share one namespace")
            groups[row["id"]] = check_group(where, row, FILES[key][1], personas)
            conflicts[row["id"]] = row["conflict"].strip()
            group_line[row["id"]] = where

    task_line = {}

    def dilemma_tasks(split: str, allowed: dict, group_files: str) -> list[Task]:
        tasks = []
        for where, row in read_nonempty(paths[split], DILEMMA):
            check_dilemma(where, row, allowed, group_files)
            if row["id"] in task_line:
                raise ValueError(f"{where}: id '{row['id']}' is already used at {task_line[row['id']]}; "
                                 f"held-out tasks need ids of their own")
            task_line[row["id"]] = where
            tasks.append(Task(id=row["id"], split=split, tier=row["tier"], dilemma=row["dilemma"].strip(),
                              personas=tuple(personas[p] for p in groups[row["group"]]),
                              group=row["group"]))
        return tasks

    tasks = {
        "train": dilemma_tasks("train", groups, "persona_pairs.jsonl or persona_sets.jsonl"),
        # Held-out dilemmas for the training groups: the method's 100 two-party conflict tasks,
        # then one per persona set so multi-party agreement is measured too.
        "eval": dilemma_tasks("eval", groups, "persona_pairs.jsonl or persona_sets.jsonl"),
        "open_ended": [Task(id=row["id"], split="open_ended", tier=OPEN_ENDED_TIER,
                            dilemma=row["question"].strip(), personas=(), group="")
                       for _, row in read_nonempty(paths["open_ended"], QUESTION)],
    }
    return Scenarios(personas=personas, groups=groups, conflicts=conflicts, tasks=tasks)

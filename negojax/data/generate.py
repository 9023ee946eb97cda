"""Synthesise new tasks or persona pairs with a model, in the user task schema of task_files.py.

    python -m negojax.data.generate --out DIR --num N --kind dilemmas|pairs [--split train|eval] [--model PATH]

`--kind dilemmas` appends task rows {"id", "dilemma", "personas", "tier", "group"} to DIR/train.jsonl,
or DIR/eval.jsonl with `--split eval`: each dilemma is written for a persona group (a shipped pair
or set, or a pair generated earlier into DIR), whose personas the row carries inline, and group is
that group's id. Once DIR holds both files it is a user task directory:
`negojax.data.load_tasks(split, resources_dir=DIR)`.
`--kind pairs` invents new persona pairs and appends them to the side file DIR/pairs.jsonl
({"id", "conflict", "personas": [2 personas of the task schema]}), which the loader ignores; a pair
becomes tasks when a later `--kind dilemmas` run draws it. Kept apart because a pair alone, with
no dilemma yet, is not a task.

A backend is any callable `backend(prompts: list[str]) -> list[str]` (one reply per prompt); the
CLI's default runs the local model. A reply is kept only if it parses, validates against the task
schema, and is not a near-duplicate (character 5-gram Jaccard similarity above `threshold`) of a
shipped row, a row already in DIR (either split, or pairs.jsonl), or a row kept earlier in this run.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pathlib
import re
from typing import Callable, Iterable, Optional

import numpy as np

from negojax.data.lines import json_lines
from negojax.data.records import TIERS, Persona
from negojax.data.scenarios import Scenarios, load_scenarios
from negojax.data.task_files import (PERSONA, SPLIT_FILES, Schema, check_personas, check_strings,
                                     read_task_file)

Backend = Callable[[list[str]], list[str]]
KINDS = ("dilemmas", "pairs")
MIN_DILEMMA_CHARS = 60  # shorter replies are fragments, not a situation with a decision
PAIRS_FILE = "pairs.jsonl"
PAIR = Schema("persona pair", ("id", "conflict", "personas"))
PERSONA_KEYS = PERSONA.required + PERSONA.optional

TIER_GUIDE = {
    "professional": "a high-stakes professional situation",
    "interpersonal": "a complex interpersonal situation",
    "everyday": "an everyday micro-ethical situation",
}


def shingles(text: str, n: int = 5) -> frozenset[str]:
    normal = " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())
    return frozenset(normal[i:i + n] for i in range(max(1, len(normal) - n + 1)))


class NearDuplicates:
    """Texts seen so far; a new text is a near-duplicate if its 5-gram Jaccard similarity to any of
    them exceeds the threshold."""

    def __init__(self, texts: Iterable[str], threshold: float):
        self._threshold = threshold
        self._seen = [shingles(t) for t in texts]

    def is_near_duplicate(self, text: str) -> bool:
        new = shingles(text)
        return any(len(new & old) / len(new | old) > self._threshold for old in self._seen)

    def add(self, text: str) -> None:
        self._seen.append(shingles(text))


def first_json_object(reply: str) -> Optional[dict]:
    """The first JSON object in a model reply (models wrap JSON in prose or code fences)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", reply):
        try:
            value, _ = decoder.raw_decode(reply, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def slug(name: str) -> str:
    return "_".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())


@dataclasses.dataclass
class Report:
    kept: int = 0
    invalid: int = 0
    duplicate: int = 0


def dilemma_prompt(tier: str, conflict: str, personas: list[str], example: str) -> str:
    return (
        f"Write one new moral dilemma: {TIER_GUIDE[tier]} in which these stakeholders' values "
        f"conflict: {', '.join(personas)} ({conflict}).\n"
        "Use 2 to 5 concrete sentences in the second person or neutral voice, ending with the "
        "decision to make. Do not reuse the example's situation.\n"
        f'Example: {{"dilemma": {json.dumps(example)}}}\n'
        'Answer with one JSON object only: {"dilemma": "..."}'
    )


def pair_prompt(example_conflicts: list[str], example_persona: dict) -> str:
    fields = ", ".join(f'"{f}"' for f in PERSONA_KEYS)
    return (
        "Invent two personas whose core values genuinely conflict, on a conflict not in this list: "
        f"{'; '.join(example_conflicts)}.\n"
        f"Each persona has {fields} (style is their negotiation style in one sentence).\n"
        f"Example persona: {json.dumps(example_persona)}\n"
        'Answer with one JSON object only: {"conflict": "<value> vs <value>", "personas": '
        "[{persona 1}, {persona 2}]}"
    )


def persona_row(persona: Persona) -> dict:
    """A persona as the task schema writes it: its fields without the shipped id, empty ones left out."""
    return {key: getattr(persona, key) for key in PERSONA_KEYS if getattr(persona, key)}


def _append(path: pathlib.Path, rows: list[dict]) -> None:
    if not rows:
        return  # an empty file would be a directory the loader refuses
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_pairs(path: pathlib.Path):
    """(where, id, conflict, personas) for each row of a pairs file generated earlier."""
    for where, _, row in json_lines(path):
        fields = check_strings(where, "", row, PAIR, lists=("personas",))
        yield where, fields["id"], fields["conflict"], check_personas(where, row["personas"], parties=(2, 2))


class _Catalog:
    """Shipped scenarios plus what earlier runs (or the user) put into the output directory."""

    def __init__(self, shipped: Scenarios, out: pathlib.Path):
        self.groups = {group: tuple(shipped.personas[p] for p in ids) for group, ids in shipped.groups.items()}
        self.conflicts = dict(shipped.conflicts)
        ids_at = {}
        tasks = [t for split in ("train", "eval") for t in shipped.tasks[split]]
        tasks += [t for split, name in SPLIT_FILES.items() if (out / name).is_file()
                  for t in read_task_file(out / name, split, ids_at)]
        self.task_ids = {t.id for t in tasks}
        self.dilemmas = [t.dilemma for t in tasks]
        self.personas = list(shipped.personas.values()) + [p for t in tasks for p in t.personas]
        if (out / PAIRS_FILE).is_file():
            for where, group, conflict, personas in _read_pairs(out / PAIRS_FILE):
                if group in self.groups:
                    raise ValueError(f"{where}: pair id '{group}' is already a shipped group or an earlier "
                                     f"pair; rename it")
                self.add_pair(group, conflict, personas)

    def add_pair(self, group: str, conflict: str, personas: tuple[Persona, ...]) -> None:
        self.groups[group] = personas
        self.conflicts[group] = conflict
        self.personas += personas


def _ask(backend: Backend, prompts: list[str]) -> list[str]:
    replies = backend(prompts)
    if len(replies) != len(prompts):
        raise ValueError(f"the generation backend returned {len(replies)} replies for {len(prompts)} prompts; "
                         f"it must return one reply per prompt")
    return replies


def _parse_dilemma(answer: Optional[dict], row_id: str, tier: str, group: str, catalog) -> Optional[dict]:
    """The task row if the reply carries a usable dilemma text; None otherwise."""
    text = answer.get("dilemma") if answer is not None else None
    if not isinstance(text, str) or len(" ".join(text.split())) < MIN_DILEMMA_CHARS:
        return None
    return {"id": row_id, "dilemma": " ".join(text.split()),
            "personas": [persona_row(p) for p in catalog.groups[group]], "tier": tier, "group": group}


def _free_id(taken: set[str]) -> str:
    return next(f"gen-{k:05d}" for k in itertools.count() if f"gen-{k:05d}" not in taken)


def _generate_dilemmas(catalog, out, split, num, backend, rng, threshold, max_rounds) -> Report:
    report = Report()
    seen = NearDuplicates(catalog.dilemmas, threshold)
    group_ids = sorted(catalog.groups)
    for _ in range(max_rounds):
        if report.kept >= num:
            break
        asks = [(TIERS[int(rng.integers(len(TIERS)))], group_ids[int(rng.integers(len(group_ids)))])
                for _ in range(num - report.kept)]
        prompts = [dilemma_prompt(tier, catalog.conflicts[group], [p.name for p in catalog.groups[group]],
                                  catalog.dilemmas[int(rng.integers(len(catalog.dilemmas)))])
                   for tier, group in asks]
        kept_rows = []
        for (tier, group), reply in zip(asks, _ask(backend, prompts)):
            row = _parse_dilemma(first_json_object(reply), _free_id(catalog.task_ids), tier, group, catalog)
            if row is None:
                report.invalid += 1
            elif seen.is_near_duplicate(row["dilemma"]):
                report.duplicate += 1
            else:
                catalog.task_ids.add(row["id"])
                seen.add(row["dilemma"])
                kept_rows.append(row)
        _append(out / SPLIT_FILES[split], kept_rows)
        report.kept += len(kept_rows)
    return report


def _parse_pair(answer: Optional[dict]) -> Optional[tuple[str, str, tuple[Persona, ...]]]:
    """(pair id, conflict, personas) if the reply is a valid pair of complete personas; None otherwise."""
    if answer is None or not isinstance(answer.get("conflict"), str) or not answer["conflict"].strip():
        return None
    try:
        personas = check_personas("generated pair", answer.get("personas"), parties=(2, 2))
    except ValueError:
        return None
    # A user's persona may be sparse, but a generated one must be whole: its fields are all the
    # later dilemma prompts and the seats will know of it.
    if not all(getattr(p, key) for p in personas for key in PERSONA_KEYS):
        return None
    personas = tuple(Persona(**{key: " ".join(getattr(p, key).split()) for key in PERSONA_KEYS}) for p in personas)
    return f"{slug(personas[0].name)}_vs_{slug(personas[1].name)}", " ".join(answer["conflict"].split()), personas


def _persona_text(persona: Persona) -> str:
    return f"{persona.core_value} {persona.wants} {persona.fears}"


def _generate_pairs(catalog, out, num, backend, rng, threshold, max_rounds) -> Report:
    report = Report()
    seen_conflicts = NearDuplicates(catalog.conflicts.values(), threshold)
    seen_personas = NearDuplicates([_persona_text(p) for p in catalog.personas], threshold)
    names = {p.name.casefold() for p in catalog.personas}
    examples = sorted({p for group in catalog.groups.values() for p in group}, key=lambda p: p.name)
    for _ in range(max_rounds):
        if report.kept >= num:
            break
        prompts = [pair_prompt(sorted(catalog.conflicts.values()),
                               persona_row(examples[int(rng.integers(len(examples)))]))
                   for _ in range(num - report.kept)]
        new_pairs = []
        for reply in _ask(backend, prompts):
            parsed = _parse_pair(first_json_object(reply))
            if parsed is None:
                report.invalid += 1
                continue
            group, conflict, personas = parsed
            if (any(p.name.casefold() in names for p in personas) or group in catalog.groups
                    or seen_conflicts.is_near_duplicate(conflict)
                    or any(seen_personas.is_near_duplicate(_persona_text(p)) for p in personas)):
                report.duplicate += 1
                continue
            catalog.add_pair(group, conflict, personas)
            names.update(p.name.casefold() for p in personas)
            seen_conflicts.add(conflict)
            for persona in personas:
                seen_personas.add(_persona_text(persona))
            new_pairs.append({"id": group, "conflict": conflict, "personas": [persona_row(p) for p in personas]})
        _append(out / PAIRS_FILE, new_pairs)
        report.kept += len(new_pairs)
    return report


def generate(kind: str, out_dir, num: int, backend: Backend, *, split: str = "train", resources_dir=None,
             seed: int = 0, threshold: float = 0.5, max_rounds: int = 4) -> Report:
    """Ask `backend` for new `kind` rows until `num` are kept or `max_rounds` batches are spent;
    dilemmas go to the file of `split` ('train' or 'eval') in `out_dir`."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind '{kind}'; use one of {', '.join(KINDS)}")
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLIT_FILES)}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog = _Catalog(load_scenarios(resources_dir), out)
    rng = np.random.default_rng(seed)
    if kind == "dilemmas":
        return _generate_dilemmas(catalog, out, split, num, backend, rng, threshold, max_rounds)
    return _generate_pairs(catalog, out, num, backend, rng, threshold, max_rounds)


def local_model_backend(model_path: Optional[str], *, max_new_tokens: int, temperature: float,
                        seed: int) -> Backend:
    """The local model behind the backend interface; imported here so this module loads without it."""
    import negojax

    model = negojax.load_model(model_path or negojax.default_model_dir())
    calls = itertools.count()

    def backend(prompts: list[str]) -> list[str]:
        chats = [model.tokenizer.render_chat([{"role": "user", "content": p}]) for p in prompts]
        # A fresh seed per call so a retry round does not resample the same replies.
        return negojax.generate(model, chats, max_new_tokens=max_new_tokens, temperature=temperature,
                                top_p=0.95, seed=seed + next(calls))

    return backend


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m negojax.data.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the user task directory to append generated rows to")
    parser.add_argument("--num", type=int, required=True, help="how many rows to keep")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--split", choices=tuple(SPLIT_FILES), default="train",
                        help="the task file dilemmas are appended to (DIR/train.jsonl or DIR/eval.jsonl)")
    parser.add_argument("--model", default=None, help="model path or preset (default: the embedded default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.5, help="5-gram Jaccard near-duplicate cut-off")
    parser.add_argument("--max-rounds", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--temperature", type=float, default=0.9)
    args = parser.parse_args(argv)
    backend = local_model_backend(args.model, max_new_tokens=args.max_new_tokens,
                                  temperature=args.temperature, seed=args.seed)
    report = generate(args.kind, args.out, args.num, backend, split=args.split, seed=args.seed,
                      threshold=args.threshold, max_rounds=args.max_rounds)
    print(f"kept {report.kept} {args.kind} (invalid {report.invalid}, near-duplicate {report.duplicate}) "
          f"-> {args.out}")


if __name__ == "__main__":
    main()

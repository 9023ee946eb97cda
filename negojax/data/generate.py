"""Synthesise new dilemmas or persona pairs with a model and append the good ones to JSONL.

    python -m negojax.data.generate --out DIR --num N --kind dilemmas|pairs [--model PATH]

A backend is any callable `backend(prompts: list[str]) -> list[str]` (one reply per prompt); the
CLI's default runs the local model. A reply is kept only if it parses, validates against the
scenario schema, and is not a near-duplicate (character 5-gram Jaccard similarity above
`threshold`) of a shipped row, an earlier generated row in DIR, or a row kept earlier in this run.
DIR receives dilemmas.jsonl, or personas.jsonl + persona_pairs.jsonl, in the shipped schema;
dilemmas may use the shipped groups and the pairs generated earlier into DIR.
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

from negojax.data.records import PERSONA_FIELDS, TIERS
from negojax.data.scenarios import (DILEMMA, PAIR, PERSONA, Scenarios, check_dilemma, check_group, check_row,
                                    load_scenarios, read_rows, to_persona)

Backend = Callable[[list[str]], list[str]]
KINDS = ("dilemmas", "pairs")
MIN_DILEMMA_CHARS = 60  # shorter replies are fragments, not a situation with a decision

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
    fields = ", ".join(f'"{f}"' for f in PERSONA_FIELDS if f != "id")
    return (
        "Invent two personas whose core values genuinely conflict, on a conflict not in this list: "
        f"{'; '.join(example_conflicts)}.\n"
        f"Each persona has {fields} (style is their negotiation style in one sentence).\n"
        f"Example persona: {json.dumps({k: v for k, v in example_persona.items() if k != 'id'})}\n"
        'Answer with one JSON object only: {"conflict": "<value> vs <value>", "personas": '
        "[{persona 1}, {persona 2}]}"
    )


def _append(path: pathlib.Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


class _Catalog:
    """Shipped scenarios plus what earlier runs generated into the output directory."""

    def __init__(self, shipped: Scenarios, out: pathlib.Path):
        self.personas = dict(shipped.personas)
        self.groups = dict(shipped.groups)
        self.conflicts = dict(shipped.conflicts)
        self.dilemmas = [t.dilemma for split in ("train", "eval") for t in shipped.tasks[split]]
        self.dilemma_ids = {t.id for split in ("train", "eval") for t in shipped.tasks[split]}
        if (out / "personas.jsonl").is_file():
            for where, row in read_rows(out / "personas.jsonl", PERSONA):
                if row["id"] in self.personas:
                    raise ValueError(f"{where}: persona id '{row['id']}' is already a shipped persona; "
                                     f"rename it")
                self.personas[row["id"]] = to_persona(row)
        if (out / "persona_pairs.jsonl").is_file():
            for where, row in read_rows(out / "persona_pairs.jsonl", PAIR):
                if row["id"] in self.groups:
                    raise ValueError(f"{where}: group id '{row['id']}' is already a shipped group; rename it")
                self.groups[row["id"]] = check_group(where, row, PAIR, self.personas)
                self.conflicts[row["id"]] = row["conflict"]
        if (out / "dilemmas.jsonl").is_file():
            for where, row in read_rows(out / "dilemmas.jsonl", DILEMMA):
                check_dilemma(where, row, self.groups, "persona_pairs.jsonl or persona_sets.jsonl")
                self.dilemmas.append(row["dilemma"])
                self.dilemma_ids.add(row["id"])


def _ask(backend: Backend, prompts: list[str]) -> list[str]:
    replies = backend(prompts)
    if len(replies) != len(prompts):
        raise ValueError(f"the generation backend returned {len(replies)} replies for {len(prompts)} prompts; "
                         f"it must return one reply per prompt")
    return replies


def _parse_dilemma(answer: Optional[dict], row_id: str, tier: str, group: str, catalog) -> Optional[dict]:
    """The dilemma row if the reply carries a usable dilemma text; None otherwise."""
    if answer is None:
        return None
    row = {"id": row_id, "tier": tier, "dilemma": answer.get("dilemma"), "group": group}
    try:
        check_row("generated dilemma", row, DILEMMA)
        check_dilemma("generated dilemma", row, catalog.groups, "the known groups")
    except ValueError:
        return None
    row["dilemma"] = " ".join(row["dilemma"].split())
    return row if len(row["dilemma"]) >= MIN_DILEMMA_CHARS else None


def _free_id(taken: set[str]) -> str:
    return next(f"gen-{k:05d}" for k in itertools.count() if f"gen-{k:05d}" not in taken)


def _generate_dilemmas(catalog, out, num, backend, rng, threshold, max_rounds) -> Report:
    report = Report()
    seen = NearDuplicates(catalog.dilemmas, threshold)
    group_ids = sorted(catalog.groups)
    for _ in range(max_rounds):
        if report.kept >= num:
            break
        asks = [(TIERS[int(rng.integers(len(TIERS)))], group_ids[int(rng.integers(len(group_ids)))])
                for _ in range(num - report.kept)]
        prompts = [dilemma_prompt(tier, catalog.conflicts[group],
                                  [catalog.personas[p].name for p in catalog.groups[group]],
                                  catalog.dilemmas[int(rng.integers(len(catalog.dilemmas)))])
                   for tier, group in asks]
        kept_rows = []
        for (tier, group), reply in zip(asks, _ask(backend, prompts)):
            row = _parse_dilemma(first_json_object(reply), _free_id(catalog.dilemma_ids), tier, group, catalog)
            if row is None:
                report.invalid += 1
            elif seen.is_near_duplicate(row["dilemma"]):
                report.duplicate += 1
            else:
                catalog.dilemma_ids.add(row["id"])
                seen.add(row["dilemma"])
                kept_rows.append(row)
        _append(out / "dilemmas.jsonl", kept_rows)
        report.kept += len(kept_rows)
    return report


def _parse_pair(answer: Optional[dict], catalog) -> Optional[tuple[list[dict], dict]]:
    """(persona rows, pair row) if the reply is a valid pair of new personas; None otherwise."""
    if answer is None or not isinstance(answer.get("personas"), list) or len(answer["personas"]) != 2:
        return None
    personas = []
    for persona in answer["personas"]:
        if not isinstance(persona, dict) or not isinstance(persona.get("name"), str):
            return None
        row = {"id": slug(persona["name"]), **{f: persona.get(f) for f in PERSONA_FIELDS if f != "id"}}
        try:
            check_row("generated persona", row, PERSONA)
        except ValueError:
            return None
        personas.append({k: " ".join(v.split()) for k, v in row.items()})
    pair = {"id": f"{personas[0]['id']}_vs_{personas[1]['id']}",
            "personas": [p["id"] for p in personas], "conflict": answer.get("conflict")}
    known = {**catalog.personas, **{p["id"]: to_persona(p) for p in personas}}
    try:
        check_row("generated pair", pair, PAIR)
        check_group("generated pair", pair, PAIR, known)
    except ValueError:
        return None
    return personas, pair


def _persona_text(persona) -> str:
    return f"{persona['core_value']} {persona['wants']} {persona['fears']}"


def _generate_pairs(catalog, out, num, backend, rng, threshold, max_rounds) -> Report:
    report = Report()
    seen_conflicts = NearDuplicates(catalog.conflicts.values(), threshold)
    seen_personas = NearDuplicates([_persona_text(dataclasses.asdict(p)) for p in catalog.personas.values()],
                                   threshold)
    example_personas = sorted(catalog.personas)
    for _ in range(max_rounds):
        if report.kept >= num:
            break
        prompts = [pair_prompt(sorted(catalog.conflicts.values()),
                               dataclasses.asdict(catalog.personas[example_personas[int(rng.integers(
                                   len(example_personas)))]]))
                   for _ in range(num - report.kept)]
        new_personas, new_pairs = [], []
        for reply in _ask(backend, prompts):
            parsed = _parse_pair(first_json_object(reply), catalog)
            if parsed is None:
                report.invalid += 1
                continue
            personas, pair = parsed
            if (any(p["id"] in catalog.personas for p in personas) or pair["id"] in catalog.groups
                    or seen_conflicts.is_near_duplicate(pair["conflict"])
                    or any(seen_personas.is_near_duplicate(_persona_text(p)) for p in personas)):
                report.duplicate += 1
                continue
            for persona in personas:
                catalog.personas[persona["id"]] = to_persona(persona)
                seen_personas.add(_persona_text(persona))
            catalog.groups[pair["id"]] = tuple(pair["personas"])
            catalog.conflicts[pair["id"]] = pair["conflict"]
            seen_conflicts.add(pair["conflict"])
            new_personas += personas
            new_pairs.append(pair)
        # Personas first: a pair row must never reference a persona that is not yet on disk.
        _append(out / "personas.jsonl", new_personas)
        _append(out / "persona_pairs.jsonl", new_pairs)
        report.kept += len(new_pairs)
    return report


def generate(kind: str, out_dir, num: int, backend: Backend, *, resources_dir=None, seed: int = 0,
             threshold: float = 0.5, max_rounds: int = 4) -> Report:
    """Ask `backend` for new `kind` rows until `num` are kept or `max_rounds` batches are spent."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind '{kind}'; use one of {', '.join(KINDS)}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog = _Catalog(load_scenarios(resources_dir), out)
    make = _generate_dilemmas if kind == "dilemmas" else _generate_pairs
    return make(catalog, out, num, backend, np.random.default_rng(seed), threshold, max_rounds)


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
    parser.add_argument("--out", required=True, help="directory to append generated JSONL rows to")
    parser.add_argument("--num", type=int, required=True, help="how many rows to keep")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--model", default=None, help="model path or preset (default: the embedded default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.5, help="5-gram Jaccard near-duplicate cut-off")
    parser.add_argument("--max-rounds", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--temperature", type=float, default=0.9)
    args = parser.parse_args(argv)
    backend = local_model_backend(args.model, max_new_tokens=args.max_new_tokens,
                                  temperature=args.temperature, seed=args.seed)
    report = generate(args.kind, args.out, args.num, backend, seed=args.seed, threshold=args.threshold,
                      max_rounds=args.max_rounds)
    print(f"kept {report.kept} {args.kind} (invalid {report.invalid}, near-duplicate {report.duplicate}) "
          f"-> {args.out}")


if __name__ == "__main__":
    main()

"""Instruction following scored by IFEval's own checkers, which the `if-verifiable` package carries.

The prompts are this project's (negojax/data/resources/ifeval_prompts.jsonl, negotiation and everyday tasks),
in IFEval's format: {"key", "prompt", "instruction_id_list", "kwargs"}, one instruction id of IFEval's registry
and its full set of arguments per instruction. Every row is checked against the registry when it is read,
because the library skips an id it does not know, which would silently count as following it.

Scores, as IFEval defines them: strict judges the response as written; loose passes an instruction when any of
IFEval's variants of the response (first line, last line or both removed, markdown asterisks removed) follows
it. Prompt-level accuracy is the fraction of prompts whose every instruction holds; instruction-level accuracy
is the fraction of all instructions that hold, counted one by one.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Sequence

import langdetect
import numpy as np
from if_verifiable import IFEvalSample, evaluate_output_for_sample
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from negojax.eval.metrics import bootstrap_ci

PROMPTS_FILE = pathlib.Path(__file__).parents[1] / "data" / "resources" / "ifeval_prompts.jsonl"

# Their checkers load NLTK's punkt tokenizer, a separate download that neither pip nor the library provides.
NEEDS_NLTK_DATA = frozenset({"length_constraints:number_sentences", "change_case:capital_word_frequency"})


@dataclasses.dataclass(frozen=True)
class InstructionPrompt:
    key: int
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict, ...]


def check_instruction(instruction_id: str, kwargs: dict) -> None:
    """Raises ValueError unless the registry knows the id and its checker takes exactly these arguments (an
    argument left out would be drawn at random by the checker, so every one must be given)."""
    if instruction_id in NEEDS_NLTK_DATA:
        raise ValueError(f"{instruction_id} needs NLTK's punkt data, which is not installed with the package")
    if instruction_id not in INSTRUCTION_DICT:
        raise ValueError(f"{instruction_id!r} is not an IFEval instruction id")
    checker = INSTRUCTION_DICT[instruction_id](instruction_id)
    try:
        checker.build_description(**kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{instruction_id} does not accept {kwargs}: {error}") from None
    expected = set(checker.get_instruction_args_keys())
    if set(kwargs) != expected:
        raise ValueError(f"{instruction_id} takes arguments {sorted(expected)}; got {sorted(kwargs)}")


def instruction_prompts(n: int | None = None) -> list[InstructionPrompt]:
    """The first `n` shipped prompts (all of them for None), each row checked against IFEval's registry."""
    prompts = []
    with open(PROMPTS_FILE, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            row = json.loads(line)
            if len(row["instruction_id_list"]) != len(row["kwargs"]):
                raise ValueError(f"{PROMPTS_FILE}:{lineno}: one kwargs dict per instruction id is needed")
            for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
                try:
                    check_instruction(instruction_id, kwargs)
                except ValueError as error:
                    raise ValueError(f"{PROMPTS_FILE}:{lineno}: {error}") from None
            prompts.append(InstructionPrompt(row["key"], row["prompt"], tuple(row["instruction_id_list"]),
                                             tuple(row["kwargs"])))
    return prompts if n is None else prompts[:n]


def _follows(prompt: InstructionPrompt, response: str) -> tuple[list[bool], list[bool]]:
    """Strict and loose pass of each of the prompt's instructions, by the library's checkers."""
    sample = IFEvalSample(prompt.key, prompt.prompt, list(prompt.instruction_id_list), list(prompt.kwargs))
    results, _ = evaluate_output_for_sample("ifeval", sample, response)
    if not results:  # an empty response: the library returns no results, IFEval fails every instruction
        return [False] * len(prompt.instruction_id_list), [False] * len(prompt.instruction_id_list)
    return [r.strict_pass for r in results], [r.loose_pass for r in results]


def _with_ci(values: list[bool], name: str, n_resamples: int, seed: int) -> dict:
    accuracy = float(np.mean(values)) if values else float("nan")
    return {name: accuracy, f"{name}_ci": list(bootstrap_ci(np.asarray(values, float), n_resamples=n_resamples,
                                                            seed=seed))}


def score_instructions(prompts: Sequence[InstructionPrompt], responses: Sequence[str], *,
                       n_resamples: int = 1000, seed: int = 0) -> dict:
    """The four IFEval accuracies with 95% bootstrap intervals (instruction-level ones resample instructions one
    by one), and strict and loose accuracy per instruction id."""
    if len(prompts) != len(responses):
        raise ValueError(f"score_instructions needs one response per prompt; got {len(responses)} for {len(prompts)}")
    # langdetect, which the language and casing checkers call, draws at random unless seeded
    langdetect.DetectorFactory.seed = 0
    passes = [_follows(p, r) for p, r in zip(prompts, responses)]
    per_id: dict[str, list[tuple[bool, bool]]] = {}
    for prompt, (strict, loose) in zip(prompts, passes):
        for instruction_id, s, l in zip(prompt.instruction_id_list, strict, loose):
            per_id.setdefault(instruction_id, []).append((s, l))
    scores = {"n_prompts": len(prompts), "n_instructions": sum(len(strict) for strict, _ in passes)}
    for level, mode, values in (
            ("prompt", "strict", [all(strict) for strict, _ in passes]),
            ("prompt", "loose", [all(loose) for _, loose in passes]),
            ("instruction", "strict", [s for strict, _ in passes for s in strict]),
            ("instruction", "loose", [l for _, loose in passes for l in loose])):
        scores.update(_with_ci(values, f"{level}_{mode}_accuracy", n_resamples, seed))
    scores["per_instruction"] = {
        instruction_id: {"strict": float(np.mean([s for s, _ in v])), "loose": float(np.mean([l for _, l in v]))}
        for instruction_id, v in sorted(per_id.items())}
    return scores

"""Evaluation drivers that take callables, so any model backend (local sampler, HTTP endpoint) plugs in.

- run_dialogues(tasks, decoding) -> transcripts: runs every task's dialogue under "greedy" or "sampled"
  decoding and always writes (and CA-scores) a final solution, agreed or not; transcripts follow the
  negotiation engine's JSONL schema with reward_components["ca_score"] (see metrics.py).
- generate(prompts) -> responses: one model answering a batch of single-turn prompts.
- prefer(questions, answers_a, answers_b) -> P(answer A better) per item: the judge's pairwise method.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from negojax.eval.instructions import InstructionPrompt, instruction_prompts, score_instructions
from negojax.eval.metrics import conflict_metrics, win_rate
from negojax.eval.reasoning import ReasoningProblem, load_gsm8k, reasoning_problems, reasoning_prompt, score_reasoning

RunDialogues = Callable[[Sequence[Any], str], list[dict]]
Generate = Callable[[list[str]], list[str]]
Prefer = Callable[[list[str], list[str], list[str]], np.ndarray]


def evaluate_conflicts(
    run_dialogues: RunDialogues,
    tasks: Sequence[Any],
    *,
    decodings: Sequence[str] = ("greedy", "sampled"),
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """(metrics per decoding, transcripts per decoding) over the held-out conflict tasks."""
    transcripts = {decoding: run_dialogues(tasks, decoding) for decoding in decodings}
    metrics = {d: conflict_metrics(ts, n_resamples=n_resamples, seed=seed) for d, ts in transcripts.items()}
    return metrics, transcripts


def win_rates(
    prefer: Prefer,
    questions: list[str],
    answers_a: list[str],
    answers_b: list[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """A against B, judged in both orders; a win or a loss counts only when both orders agree."""
    p_a_first = prefer(questions, answers_a, answers_b)
    p_b_first = prefer(questions, answers_b, answers_a)
    return win_rate(p_a_first, p_b_first, n_resamples=n_resamples, seed=seed)


def capability_guard(
    generate_a: Generate,
    generate_b: Generate,
    *,
    instructions: Sequence[InstructionPrompt] | None = None,
    problems: Sequence[ReasoningProblem] | None = None,
    gsm8k_data_dir: str | None = None,
    gsm8k_limit: int | None = 200,
) -> dict:
    """Both models on the instruction set, the arithmetic set and (where prepared) gsm8k, side by side:
    {"instructions": {"A": scores, "B": scores}, "reasoning": {...}, "gsm8k": {...} or {"skipped": why}}."""
    instructions = instruction_prompts() if instructions is None else instructions
    problems = reasoning_problems() if problems is None else problems
    models = {"A": generate_a, "B": generate_b}
    instruction_texts = [p.prompt for p in instructions]
    reasoning_texts = [reasoning_prompt(p) for p in problems]
    result = {
        "instructions": {k: score_instructions(instructions, g(instruction_texts)) for k, g in models.items()},
        "reasoning": {k: score_reasoning(problems, g(reasoning_texts)) for k, g in models.items()},
    }
    if gsm8k_data_dir is not None:
        gsm8k, skipped = load_gsm8k(gsm8k_data_dir, limit=gsm8k_limit)
        result["gsm8k"] = {"skipped": skipped} if skipped else {
            k: score_reasoning(gsm8k, g([reasoning_prompt(p) for p in gsm8k])) for k, g in models.items()
        }
    return result

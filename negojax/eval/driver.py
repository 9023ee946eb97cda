"""Evaluation drivers that take callables, so any model backend (local sampler, HTTP endpoint) plugs in.

- run_dialogues(tasks, decoding) -> transcripts: runs every task's dialogue under "greedy" or "sampled"
  decoding, one transcript per task in task order, and always writes a final solution, agreed or not;
  transcripts follow the negotiation engine's JSONL schema (see metrics.py).
- ca_score(dilemmas, personas, solutions) -> CA score per solution in [0, 5]: the judge's ca_score method.
- generate(prompts) -> responses: one model answering a batch of single-turn prompts.
- prefer(questions, answers_a, answers_b) -> P(answer A better) per item: the judge's pairwise method.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from negojax.data.records import Task
from negojax.eval.instructions import InstructionPrompt, instruction_prompts, score_instructions
from negojax.eval.metrics import conflict_metrics, win_rate
from negojax.eval.reasoning import ReasoningProblem, load_gsm8k, reasoning_problems, reasoning_prompt, score_reasoning
from negojax.rewards.rubric import format_persona

RunDialogues = Callable[[Sequence[Task], str], list[dict]]
CaScore = Callable[[list[str], list[Sequence[Any]], list[str]], np.ndarray]
Generate = Callable[[list[str]], list[str]]
Prefer = Callable[[list[str], list[str], list[str]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ConflictEval:
    metrics: dict  # metrics.conflict_metrics
    transcripts: list[dict]
    ca_scores: list[float]  # the judge's score of each final solution, NaN where it failed


def conflict_question(task: Task) -> str:
    """What the judge reads as the question when comparing two final solutions of a task."""
    if not task.personas:
        return task.dilemma
    return f"{task.dilemma}\n\nParties:\n" + "\n".join(format_persona(p) for p in task.personas)


def evaluate_conflicts(
    run_dialogues: RunDialogues,
    tasks: Sequence[Task],
    ca_score: CaScore,
    *,
    decodings: Sequence[str] = ("greedy", "sampled"),
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, ConflictEval]:
    """Each decoding's dialogues over the held-out conflict tasks, their final solutions scored for CA."""
    results = {}
    for decoding in decodings:
        transcripts = run_dialogues(tasks, decoding)
        ids = [t.get("scenario_id") for t in transcripts]
        if ids != [task.id for task in tasks]:
            raise ValueError(f"run_dialogues({decoding!r}) must return one transcript per task, in task order; "
                             f"got scenario ids {ids[:3]}... for tasks {[task.id for task in tasks[:3]]}...")
        unsolved = [t["scenario_id"] for t in transcripts if not t.get("final_solution")]
        if unsolved:
            raise ValueError(f"run_dialogues({decoding!r}) must write a final solution for every dialogue in "
                             f"evaluation; missing for {unsolved[:3]}")
        scores = ca_score([task.dilemma for task in tasks], [task.personas for task in tasks],
                          [t["final_solution"] for t in transcripts])
        scores = [float(s) for s in scores]
        metrics = conflict_metrics(transcripts, scores, n_resamples=n_resamples, seed=seed)
        results[decoding] = ConflictEval(metrics, transcripts, scores)
    return results


def win_rates(
    prefer: Prefer,
    questions: list[str],
    answers_a: list[str],
    answers_b: list[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """A against B, judged in both orders (metrics.win_rate: the orders averaged, and the
    strict count where both agree)."""
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
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Both models on the IFEval-format instruction prompts (all shipped ones by default), the arithmetic set
    and (where prepared) gsm8k, side by side:
    {"instructions": {"A": scores, "B": scores}, "reasoning": {...}, "gsm8k": {...} or {"skipped": why}}."""
    instructions = instruction_prompts() if instructions is None else instructions
    problems = reasoning_problems() if problems is None else problems
    models = {"A": generate_a, "B": generate_b}
    instruction_texts = [p.prompt for p in instructions]
    reasoning_texts = [reasoning_prompt(p) for p in problems]
    intervals = {"n_resamples": n_resamples, "seed": seed}
    result = {
        "instructions": {k: score_instructions(instructions, g(instruction_texts), **intervals)
                         for k, g in models.items()},
        "reasoning": {k: score_reasoning(problems, g(reasoning_texts), **intervals) for k, g in models.items()},
    }
    if gsm8k_data_dir is not None:
        gsm8k, skipped = load_gsm8k(gsm8k_data_dir, limit=gsm8k_limit)
        result["gsm8k"] = {"skipped": skipped} if skipped else {
            k: score_reasoning(gsm8k, g([reasoning_prompt(p) for p in gsm8k]), **intervals)
            for k, g in models.items()
        }
    return result

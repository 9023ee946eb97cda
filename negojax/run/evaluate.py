"""--config.mode=eval: the evaluation suite of negojax.eval over two models, and the report.

Model A is the trained policy (eval.trained_path, else the run's export in workdir/export, else
model.path); model B the baseline (eval.baseline_path, else model.path). Any two of a base model,
a single-agent-trained and a negotiation-trained export compare: each is labelled by the
training.json its export carries (which setting trained it, how many steps). Both negotiate the
held-out conflict tasks (greedy and sampled decoding), the judge scores their final solutions and
compares A with B pairwise in both orders on the conflict and open-ended sets, and both run the
capability guard; the process metrics of both models' conflict dialogues (negojax.eval.process)
go beside the outcomes, and a sample of the CA scores is scored again to calibrate the judge
(negojax.eval.calibration). That is the judged environments' suite (deliberation); an
environment that computes its own outcome (resource_split) reports its metrics for both models
instead, each with a bootstrap interval, beside the capability guard when that asks for prompts.
Agreement and the outcome metrics are also broken down by party count. Results go to
workdir/eval_results.json and workdir/report.html. Runs in one process on its devices.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from negojax.api import Model, generate_ids
from negojax.negotiation import derived_seed
from negojax.eval import (capability_guard, evaluate_conflicts, instruction_prompts,
                          reasoning_problems, win_rates)
from negojax.eval.calibration import calibrate, reordered
from negojax.eval.driver import conflict_question
from negojax.eval.metrics import conflict_metrics, interval
from negojax.eval.process import process_metrics
from negojax.eval.report import EVAL_RESULTS_FILE, write_run_report
from negojax.run.build import Evaluation
from negojax.run.progress import Progress

GENERATE_BATCH = 16
# Dialogues per rollout call: the batch's KV caches are what evaluation holds in memory (200
# resource_split dialogues of SmolLM2-135M at once took 15 GB on CPU).
DIALOGUE_BATCH = 64


SETTING_LABELS = {"negotiation": "negotiation-trained", "single_agent": "single-agent-trained"}


def model_label(info, path: str) -> str:
    """What a compared model is, read from the training.json beside it: "single-agent-trained
    (2150 steps): PATH"; a model without one is a base model."""
    if info is None:
        return f"base: {path}"
    env = info.get("env", "deliberation")
    where = "" if env == "deliberation" else f" on {env}"
    return f"{SETTING_LABELS[info['setting']]}{where} ({info['steps']} steps): {path}"


def dialogue_runner(run: Evaluation, name: str, progress: Progress,
                    opponent: Optional[str] = None):
    """run_dialogues(tasks, decoding) for negojax.eval: model `name` in every seat, or in seat 0
    with `opponent` (one of run.opponents) in the others."""
    params = run.models[name].params
    others = params if opponent is None else run.opponents[opponent]
    against = "" if opponent is None else f" against {opponent}"

    def dialogues(tasks, decoding: str) -> list[dict]:
        tasks, out = list(tasks), []
        progress.phase(f"model {name}{against}, {decoding} dialogues")
        for start in range(0, len(tasks), DIALOGUE_BATCH):
            rollout = run.engines[name, decoding].rollout_tasks(
                tasks[start:start + DIALOGUE_BATCH], group_size=1, policy=params, opponent=others,
                seed=derived_seed(run.seed, start, 0), mode="eval")
            out += [{**d, "prompt_index": start + d["prompt_index"]} for d in rollout.dialogues]
            progress.advance(len(rollout.dialogues))
        return out
    return dialogues


def answer_generator(model: Model, max_new_tokens: int, progress: Progress, name: str):
    """generate(prompts) for negojax.eval: greedy chat replies, in batches."""
    tok = model.tokenizer

    def generate(prompts: list[str]) -> list[str]:
        replies = []
        progress.phase(f"model {name}, single-turn answers")
        for start in range(0, len(prompts), GENERATE_BATCH):
            ids = [tok.apply_chat_template([{"role": "user", "content": p}],
                                           add_generation_prompt=True)
                   for p in prompts[start:start + GENERATE_BATCH]]
            replies += [tok.decode(r).strip()
                        for r in generate_ids(model, ids, max_new_tokens=max_new_tokens)]
            progress.advance(len(ids))
        return replies
    return generate


def judged(progress: Progress, text: str, judge_method):
    """`judge_method` with the bar naming `text` while it runs."""
    def call(*args):
        progress.phase(text)
        return judge_method(*args)
    return call


def calibration(run: Evaluation, conflicts: dict) -> dict:
    """Every decoding's CA-scored final solutions of both models, a sample scored again."""
    items, scores = [], []
    for name in run.models:
        for result in conflicts[name].values():
            items += [(task.dilemma, task.personas, t["final_solution"])
                      for task, t in zip(run.tasks, result.transcripts)]
            scores += result.ca_scores
    if run.calibration == "second_member":
        first, second = (m.ca_score for m in run.judge.members[:2])
    else:
        first, second = None, reordered(run.judge.ca_score)
    return calibrate(items, scores, second, first=first, samples=run.calibration_samples,
                     seed=run.seed, method=run.calibration)


def environment_outcomes(run: Evaluation, progress: Progress,
                         opponent: Optional[str] = None) -> tuple[dict, dict]:
    """Both models' dialogues on the held-out tasks under each decoding (against themselves, or
    against `opponent`), measured by the environment: {"A": {decoding: summary}, "B": ...,
    "A-B": ...}, and the same summaries over each party count's tasks, {"A": {decoding: {"2":
    summary, ...}}, ...}. A model's summary holds each metric's mean over the dialogues it
    applies to, with its interval (`<metric>_ci`) and "n"; "A-B" holds the mean of the per-task
    differences over the tasks where both apply, with a paired interval: both models play the
    same tasks, so the pairing removes the tasks' own spread."""
    values = {name: {d: run.environment.metrics(
        run.tasks, dialogue_runner(run, name, progress, opponent)(run.tasks, d))
        for d in run.decodings} for name in run.models}
    values["A-B"] = {d: {metric: list(np.subtract(a, values["B"][d][metric]))
                         for metric, a in values["A"][d].items()} for d in run.decodings}
    outcomes = {name: {d: _summary(by_metric, run) for d, by_metric in by_decoding.items()}
                for name, by_decoding in values.items()}
    by_parties = {name: {d: {n: _summary(by_metric, run, rows)
                             for n, rows in party_rows(run.tasks).items()}
                         for d, by_metric in by_decoding.items()}
                  for name, by_decoding in values.items()}
    return outcomes, by_parties


def party_rows(tasks) -> dict[str, list[int]]:
    """The task indices of each party count, keyed "2", "3", ... as JSON keys are."""
    rows: dict[int, list[int]] = {}
    for i, task in enumerate(tasks):
        rows.setdefault(len(task.personas), []).append(i)
    return {str(n): rows[n] for n in sorted(rows)}


def conflicts_by_parties(run: Evaluation, conflicts: dict) -> dict:
    """Each model's and decoding's conflict metrics over the tasks of each party count."""
    return {name: {d: {n: conflict_metrics([r.transcripts[i] for i in rows],
                                           [r.ca_scores[i] for i in rows],
                                           n_resamples=run.n_resamples, seed=run.seed)
                       for n, rows in party_rows(run.tasks).items()}
                   for d, r in by_decoding.items()}
            for name, by_decoding in conflicts.items()}


def _summary(by_metric: dict, run: Evaluation, rows=None) -> dict:
    """Over the tasks at `rows` (default: all)."""
    rows = range(len(run.tasks)) if rows is None else rows
    summary = {"n": len(rows)}
    for metric, column in by_metric.items():
        column = [column[i] for i in rows]
        finite = [v for v in column if np.isfinite(v)]
        summary[metric] = float(np.mean(finite)) if finite else float("nan")
        summary[f"{metric}_ci"] = list(interval(
            finite, rate=metric in run.environment.rate_metrics, n_resamples=run.n_resamples,
            seed=run.seed))
    return summary


def evaluate(run: Evaluation) -> str:
    """The suite, with a progress bar over its items (dialogues and single-turn answers) whose
    phase names the model, the decoding or the judge's question at work."""
    instructions = instruction_prompts(run.capability_prompts)
    problems = reasoning_problems(max(run.reasoning_problems, 1))[:run.reasoning_problems]
    open_ended = run.open_ended if run.environment.judged else []
    dialogues = len(run.decodings) * len(run.tasks) * (1 + len(run.opponents))
    items = len(run.models) * (dialogues + len(open_ended) + len(instructions) + len(problems))
    progress = Progress(items, desc="eval", unit="item")
    try:
        if not run.environment.judged:
            return _evaluate_outcomes(run, progress, instructions, problems)
        return _evaluate_judged(run, progress, instructions, problems)
    finally:
        progress.close()


def _evaluate_judged(run: Evaluation, progress: Progress, instructions, problems) -> str:
    judge, n, seed = run.judge, run.n_resamples, run.seed
    ca_score = judged(progress, "judge: CA scores", judge.ca_score)
    prefer = judged(progress, "judge: pairwise comparisons", judge.prefer)
    conflicts = {name: evaluate_conflicts(dialogue_runner(run, name, progress), run.tasks,
                                          ca_score, decodings=run.decodings, n_resamples=n,
                                          seed=seed)
                 for name in run.models}
    first = run.decodings[0]
    results = {
        "models": {name: model_label(run.trained_by[name], path)
                   for name, path in run.paths.items()},
        "trained_by": run.trained_by,
        "conflict": {d: r.metrics for d, r in conflicts["A"].items()},
        "conflict_baseline": {d: r.metrics for d, r in conflicts["B"].items()},
        "conflict_by_parties": conflicts_by_parties(run, conflicts),
        "ca_scores": {name: conflicts[name][first].ca_scores for name in run.models},
        "process": {name: {d: process_metrics(r.transcripts, [t.personas for t in run.tasks],
                                              similarity_kind=run.process_similarity,
                                              judge=judge,
                                              n_resamples=n, seed=seed)
                           for d, r in conflicts[name].items()}
                    for name in run.models},
        # The first decoding's under "conflict", each other's under "conflict_<decoding>": the
        # paper reports greedy and sampled win rates side by side.
        "win_rates": {"conflict" if d == first else f"conflict_{d}": win_rates(
            prefer, [conflict_question(t) for t in run.tasks],
            [t["final_solution"] for t in conflicts["A"][d].transcripts],
            [t["final_solution"] for t in conflicts["B"][d].transcripts],
            n_resamples=n, seed=seed) for d in run.decodings},
    }
    if run.calibration_samples:
        progress.phase("judge: calibration")
        results["calibration"] = calibration(run, conflicts)
    generators = _generators(run, progress)
    if run.open_ended:
        questions = [t.dilemma for t in run.open_ended]
        results["win_rates"]["open_ended"] = win_rates(
            prefer, questions, generators["A"](questions), generators["B"](questions),
            n_resamples=n, seed=seed)
    results["capability"] = _capability(run, generators, instructions, problems)
    return _write(run, results, progress)


def _generators(run: Evaluation, progress: Progress) -> dict:
    return {name: answer_generator(m, run.answer_max_new_tokens, progress, name)
            for name, m in run.models.items()}


def _capability(run: Evaluation, generators: dict, instructions, problems) -> dict:
    return capability_guard(
        generators["A"], generators["B"], instructions=instructions, problems=problems,
        gsm8k_data_dir=run.gsm8k_data_dir, n_resamples=run.n_resamples, seed=run.seed)


def _evaluate_outcomes(run: Evaluation, progress: Progress, instructions, problems) -> str:
    """An environment that computes its outcome: its metrics for both models, and the
    capability guard when it asks for any prompts."""
    outcomes, by_parties = environment_outcomes(run, progress)
    results = {"models": {name: model_label(run.trained_by[name], path)
                          for name, path in run.paths.items()},
               "trained_by": run.trained_by,
               "environment": {"name": run.environment.name, "outcomes": outcomes,
                               "by_parties": by_parties,
                               # each model in seat 0 against each opponent in the others
                               "against": {opponent: environment_outcomes(run, progress,
                                                                          opponent)[0]
                                           for opponent in run.opponents},
                               "references": {name: _summary(by_metric, run) for name, by_metric
                                              in run.environment.reference_metrics(
                                                  run.tasks).items()}}}
    if run.capability_prompts or run.reasoning_problems:
        results["capability"] = _capability(run, _generators(run, progress), instructions,
                                            problems)
    return _write(run, results, progress)


def _write(run: Evaluation, results: dict, progress: Progress) -> str:
    progress.phase("report")
    report = write_run_report(run.workdir, results)
    progress.close()
    print(f"wrote:\n  eval_results      {run.workdir}/{EVAL_RESULTS_FILE}\n"
          f"  report            {report}", flush=True)
    return report

"""--config.mode=eval: the evaluation suite of negojax.eval over two models, and the report.

Model A is the trained policy (eval.trained_path, else the run's export in workdir/export, else
model.path); model B the baseline (eval.baseline_path, else model.path). Both negotiate the
held-out conflict tasks (greedy and sampled decoding), the judge scores their final solutions and
compares A with B pairwise in both orders on the conflict and open-ended sets, and both run the
capability guard. Results go to workdir/eval_results.json and workdir/report.html. Runs in one
process on its devices.
"""
from __future__ import annotations

import json
import os

import numpy as np

from negojax.data import load_tasks
from negojax.eval.driver import capability_guard, conflict_question, evaluate_conflicts, win_rates
from negojax.eval.instructions import instruction_prompts
from negojax.eval.reasoning import reasoning_problems
from negojax.eval.report import EVAL_RESULTS_FILE, write_report
from negojax.model import Model, generate_ids
from negojax.negotiation.engine import NegotiationEngine
from negojax.parallel.mesh import make_mesh
from negojax.parallel.sharding import LogicalRules
from negojax.trainer import EXPORT_DIR, load_policy, make_judge, negotiation_config, run_rollouts

GENERATE_BATCH = 16


def _model_paths(config) -> dict:
    exported = os.path.join(config.workdir, EXPORT_DIR)
    trained = config.eval.trained_path or (exported if os.path.isfile(
        os.path.join(exported, "config.json")) else config.model.path)
    return {"A": trained, "B": config.eval.baseline_path or config.model.path}


def _load(config, path: str, rules) -> Model:
    model_cfg = config.model.copy_and_resolve_references()
    with model_cfg.unlocked():
        model_cfg.path = path
        if path != config.model.path:  # a checkpoint of its own: its real weights
            model_cfg.random_init = False
            model_cfg.overrides = {}
    return load_policy(model_cfg, rules)


def dialogue_runner(config, model: Model, judge, rules):
    """run_dialogues(tasks, decoding) for negojax.eval: the model in every seat."""
    def run(tasks, decoding: str) -> list[dict]:
        engine = NegotiationEngine(negotiation_config(config.rollout, greedy=decoding == "greedy"),
                                   model.config, model.tokenizer, judge=judge, rules=rules)
        rollout = run_rollouts(engine, list(tasks), group_size=1, policy=model.params,
                               opponent=model.params, trainable_seats=(0,), seed=config.seed,
                               mode="eval")
        return rollout.dialogues
    return run


def answer_generator(model: Model, max_new_tokens: int):
    """generate(prompts) for negojax.eval: greedy chat replies, in batches."""
    tok = model.tokenizer

    def generate(prompts: list[str]) -> list[str]:
        replies = []
        for start in range(0, len(prompts), GENERATE_BATCH):
            ids = [tok.apply_chat_template([{"role": "user", "content": p}],
                                           add_generation_prompt=True)[0]
                   for p in prompts[start:start + GENERATE_BATCH]]
            replies += [tok.decode(r).strip()
                        for r in generate_ids(model, ids, max_new_tokens=max_new_tokens)]
        return replies
    return generate


def evaluate(config, mesh_sizes: dict) -> str:
    e = config.eval
    rules = LogicalRules(make_mesh(**mesh_sizes))
    paths = _model_paths(config)
    models = {name: _load(config, path, rules) for name, path in paths.items()}
    # The judge's "policy" is the baseline: the untrained model.
    judge = make_judge(config, models["B"], config.workdir)
    tasks = load_tasks("eval")[:e.num_tasks]
    conflicts = {name: evaluate_conflicts(dialogue_runner(config, m, judge, rules), tasks,
                                          judge.ca_score, decodings=tuple(e.decodings),
                                          n_resamples=e.n_resamples, seed=config.seed)
                 for name, m in models.items()}
    first = e.decodings[0]
    results = {
        "models": {name: f"{'trained' if name == 'A' else 'base'}: {path}"
                   for name, path in paths.items()},
        "conflict": {d: r.metrics for d, r in conflicts["A"].items()},
        "conflict_baseline": {d: r.metrics for d, r in conflicts["B"].items()},
        "ca_scores": {name: conflicts[name][first].ca_scores for name in models},
        "win_rates": {"conflict": win_rates(
            judge.prefer, [conflict_question(t) for t in tasks],
            [t["final_solution"] for t in conflicts["A"][first].transcripts],
            [t["final_solution"] for t in conflicts["B"][first].transcripts],
            n_resamples=e.n_resamples, seed=config.seed)},
    }
    generators = {name: answer_generator(m, e.answer_max_new_tokens) for name, m in models.items()}
    open_ended = load_tasks("open_ended")[:e.open_ended_tasks]
    if open_ended:
        questions = [t.dilemma for t in open_ended]
        results["win_rates"]["open_ended"] = win_rates(
            judge.prefer, questions, generators["A"](questions), generators["B"](questions),
            n_resamples=e.n_resamples, seed=config.seed)
    results["capability"] = capability_guard(
        generators["A"], generators["B"],
        instructions=instruction_prompts(max(e.capability_prompts, 1))[:e.capability_prompts],
        problems=reasoning_problems(max(e.reasoning_problems, 1))[:e.reasoning_problems],
        gsm8k_data_dir=e.gsm8k_data_dir or None)
    os.makedirs(config.workdir, exist_ok=True)
    results_path = os.path.join(config.workdir, EVAL_RESULTS_FILE)
    with open(results_path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, default=_json_number)
    report = write_report(config.workdir, metrics_jsonl=os.path.join(config.workdir, "metrics.jsonl"),
                          eval_results=json.loads(json.dumps(results, default=_json_number)),
                          transcripts_jsonl=os.path.join(config.workdir, "transcripts.jsonl"))
    print(f"wrote:\n  eval_results      {results_path}\n  report            {report}", flush=True)
    return report


def _json_number(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

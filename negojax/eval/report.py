"""The evaluation report: workdir/report.html (PNG plots in workdir/report/) and workdir/report.md.

Inputs
------
metrics_jsonl: the trainer's metrics, one JSON object per step with at least "step" and any of
  "reward_mean", "reward_std", "reward_min", "reward_max", "agreement_rate", "mean_rounds", "kl",
  "clip_fraction", "entropy", "grad_norm", "skipped_updates", "time_rollout_s", "time_judge_s", "time_update_s".
transcripts_jsonl: the negotiation engine's dialogues, one per line:
  {"step", "scenario_id", "personas": [names], "turns": [{"speaker", "persona", "text", "num_tokens"}],
   "agreement_turn": int | None, "final_solution": str | None, "reward": float, "reward_components": {...}}.
eval_results: the evaluation, this structure (every key optional; a missing piece is reported as missing):
  {
    "models": {"A": "label of the evaluated model", "B": "label of the baseline"},
    "trained_by": {"A": TrainingInfo or None, "B": ...},                        # None: a base model
    "conflict": {"greedy": ConflictMetrics, "sampled": ConflictMetrics},           # model A
    "conflict_baseline": {"greedy": ConflictMetrics, "sampled": ConflictMetrics},  # model B
    "win_rates": {"conflict": WinRate, "conflict_sampled": WinRate,                # A against B
                  "open_ended": WinRate},              # "conflict": the first decoding's
    "capability": {"instructions": {"A": InstructionScores, "B": InstructionScores},
                   "reasoning": {"A": ReasoningScores, "B": ReasoningScores},
                   "gsm8k": {"A": ..., "B": ...} or {"skipped": "why"}},
    "ca_scores": {"A": [float, ...], "B": [float, ...]},                           # per dialogue, 0..5
  }
  ConflictMetrics = metrics.conflict_metrics(...), WinRate = metrics.win_rate(...),
  InstructionScores = instructions.score_instructions(...), ReasoningScores = reasoning.score_reasoning(...),
  TrainingInfo = the training.json beside a negojax export: {"setting", "steps", "model_path", "judge"};
  driver.py's functions return exactly these.
"""
from __future__ import annotations

import datetime
import html
import json
import math
import os
import posixpath
import re
from typing import Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure

from negojax import storage
from negojax.jsonl import Records, plain
from negojax.negotiation.view import DIALOGUE_STYLE, dialogue_html

PLOT_DIR = "report"
SAMPLE_TRANSCRIPTS = 3
_NUMERIC = re.compile(r"-?[\d.]+( \[-?[\d.]+, -?[\d.]+\])?|n/a|")
_COLORS = {"A": "#1f6feb", "B": "#d1242f"}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1f2328; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #d0d7de; padding: .35em .8em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f6f8fa; }
img.plot { max-width: 100%; border: 1px solid #d0d7de; border-radius: 6px; margin: .5em 0; }
.missing { color: #6e7781; font-style: italic; }
.meta { color: #57606a; font-size: .9em; }
""" + DIALOGUE_STYLE

# Records in the page itself whether every plot image decoded, so a headless browser check can read it.
_PLOT_CHECK = """
window.addEventListener("load", function () {
  var plots = document.querySelectorAll("img.plot");
  var ok = Array.prototype.filter.call(plots, function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.setAttribute("data-plots-loaded", ok.length + "/" + plots.length);
});
"""


def _series(rows: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    kept = [(r["step"], r[key]) for r in rows if r.get(key) is not None and "step" in r]
    if not kept:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*kept)
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def _save(fig: Figure, path: str) -> str:
    fig.tight_layout()
    with storage.open(path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")
    return path


def plot_reward(rows: Sequence[dict], path: str) -> str | None:
    steps, mean = _series(rows, "reward_mean")
    if steps.size == 0:
        return None
    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot()
    low_steps, low = _series(rows, "reward_min")
    high_steps, high = _series(rows, "reward_max")
    if low.size == mean.size and high.size == mean.size:
        ax.fill_between(steps, low, high, color=_COLORS["A"], alpha=0.15, label="min to max")
    std_steps, std = _series(rows, "reward_std")
    if std.size == mean.size:
        ax.fill_between(steps, mean - std, mean + std, color=_COLORS["A"], alpha=0.3, label="mean ± std")
    ax.plot(steps, mean, color=_COLORS["A"], linewidth=1.8, label="mean reward")
    ax.set(xlabel="training step", ylabel="reward (0 to 5)", title="Reward over training")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_agreement(rows: Sequence[dict], path: str) -> str | None:
    rate_steps, rate = _series(rows, "agreement_rate")
    round_steps, rounds = _series(rows, "mean_rounds")
    if rate.size == 0 and rounds.size == 0:
        return None
    fig = Figure(figsize=(9, 3.6))
    left = fig.add_subplot(1, 2, 1)
    left.plot(rate_steps, rate, color="#1a7f37", linewidth=1.8)
    left.set(xlabel="training step", ylabel="agreement rate", title="Agreement rate", ylim=(0, 1.02))
    left.grid(alpha=0.3)
    right = fig.add_subplot(1, 2, 2)
    right.plot(round_steps, rounds, color="#9a6700", linewidth=1.8)
    right.set(xlabel="training step", ylabel="turns", title="Mean rounds to agreement")
    right.grid(alpha=0.3)
    return _save(fig, path)


def plot_diagnostics(rows: Sequence[dict], path: str) -> str | None:
    keys = [k for k in ("kl", "entropy", "clip_fraction", "grad_norm") if _series(rows, k)[0].size]
    if not keys:
        return None
    fig = Figure(figsize=(9, 2.6 * math.ceil(len(keys) / 2)))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(math.ceil(len(keys) / 2), 2, i + 1)
        ax.plot(*_series(rows, key), color="#6639ba", linewidth=1.4)
        ax.set(xlabel="training step", title=key)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_ca_histogram(ca_scores: dict[str, Sequence[float]], labels: dict[str, str], path: str) -> str | None:
    present = {k: v for k, v in ca_scores.items() if len(v)}
    if not present:
        return None
    fig = Figure(figsize=(9, 3.6))
    ax = fig.add_subplot()
    bins = np.linspace(0, 5, 21)
    for key, scores in present.items():
        ax.hist(scores, bins=bins, alpha=0.55, color=_COLORS.get(key), edgecolor="white",
                label=f"{labels.get(key, key)} (mean {np.mean(scores):.2f}, n={len(scores)})")
    ax.set(xlabel="CA score of the final solution", ylabel="dialogues", title="Collective-Agency scores", xlim=(0, 5))
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


# ---- tables, as (header, rows) so the HTML and the Markdown say the same thing ----

def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _with_ci(metrics: dict, key: str) -> str:
    ci = metrics.get(f"{key}_ci")
    if not ci:
        return _fmt(metrics.get(key))
    return f"{_fmt(metrics.get(key))} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def conflict_table(results: dict, labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    header = ["model", "decoding", "n", "agreement rate [95% CI]", "mean rounds to agreement", "mean CA score"]
    rows = []
    for key, label in (("conflict", labels["A"]), ("conflict_baseline", labels["B"])):
        for decoding, m in results.get(key, {}).items():
            rows.append([label, decoding, _fmt(m.get("n")), _with_ci(m, "agreement_rate"),
                         _with_ci(m, "mean_rounds"), _with_ci(m, "mean_ca_score")])
    return header, rows


def win_rate_table(results: dict) -> tuple[list[str], list[list[str]]]:
    header = ["question set", "n", "wins", "losses", "ties", "win rate [95% CI]"]
    rows = [[name, _fmt(w.get("n")), _fmt(w.get("wins")), _fmt(w.get("losses")), _fmt(w.get("ties")),
             _with_ci(w, "win_rate")] for name, w in results.get("win_rates", {}).items()]
    return header, rows


def comparison_table(results: dict, labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """The paper's comparison: one row per compared model (base, single-agent- or
    negotiation-trained), its two-order CA win rate against the other model on each question set
    (conflict, per decoding, and open-ended), and its mean CA score. B's win rate is A's loss rate plus half the ties,
    1 - A's, and its interval A's mirrored."""
    wins = results.get("win_rates", {})
    if not wins:
        return [], []
    conflict = {"A": results.get("conflict", {}), "B": results.get("conflict_baseline", {})}
    decoding = next(iter(conflict["A"]), None)

    def set_name(key: str) -> str:  # "conflict" is the first decoding's, "conflict_<d>" another's
        if key.startswith("conflict_"):
            return f"conflict ({key[len('conflict_'):]})"
        if key == "conflict" and decoding:
            return f"conflict ({decoding})"
        return key.replace("_", "-")
    header = ["model", "setting", "training steps",
              *(f"CA win rate against the other, {set_name(k)} [95% CI]" for k in wins),
              f"mean CA score, conflict ({decoding or 'n/a'})"]

    def for_b(w: dict) -> dict:
        ci = w.get("win_rate_ci")
        return {"win_rate": 1 - w["win_rate"], "win_rate_ci": ci and [1 - ci[1], 1 - ci[0]]}

    rows = []
    for name in ("A", "B"):
        info = results.get("trained_by", {}).get(name)
        cells = [labels[name], info["setting"] if info else "base", _fmt(info["steps"]) if info else "0"]
        cells += [_with_ci(w if name == "A" else for_b(w), "win_rate") for w in wins.values()]
        cells.append(_with_ci(conflict[name].get(decoding, {}), "mean_ca_score"))
        rows.append(cells)
    return header, rows


def capability_table(results: dict, labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    header = ["set", "metric", labels["A"], labels["B"], "difference (A - B)"]
    rows = []
    for name, entry in results.get("capability", {}).items():
        if "skipped" in entry:
            rows.append([name, entry["skipped"], "", "", ""])
            continue
        a, b = entry.get("A", {}), entry.get("B", {})
        for metric in [k for k, v in a.items() if isinstance(v, float)]:
            diff = a[metric] - b[metric] if isinstance(b.get(metric), float) else None
            rows.append([name, metric, _fmt(a[metric]), _fmt(b.get(metric)), _fmt(diff)])
    return header, rows


def instruction_kind_table(results: dict, labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Accuracy per constraint kind, so a regression can be traced to the instruction types it hits."""
    entry = results.get("capability", {}).get("instructions", {})
    a, b = entry.get("A", {}).get("per_kind", {}), entry.get("B", {}).get("per_kind", {})
    header = ["constraint kind", labels["A"], labels["B"]]
    return header, [[kind, _fmt(a.get(kind)), _fmt(b.get(kind))] for kind in sorted(set(a) | set(b))]


def training_table(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    keys = ("reward_mean", "agreement_rate", "mean_rounds", "kl", "entropy", "grad_norm", "skipped_updates",
            "judge_calls", "judge_failures", "samples_dropped")
    steps = [r for r in rows if "step" in r]
    if not steps:
        return [], []
    first, last = steps[0], steps[-1]
    header = ["metric", f"step {first['step']}", f"step {last['step']}"]
    return header, [[k, _fmt(first.get(k)), _fmt(last.get(k))] for k in keys if k in last or k in first]


def _html_cell(text: str) -> str:
    numeric = _NUMERIC.fullmatch(text) is not None
    return f'<td class="num">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def _html_table(table: tuple[list[str], list[list[str]]]) -> str:
    header, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(table: tuple[list[str], list[list[str]]]) -> str:
    header, rows = table
    cell = lambda c: c.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _missing(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


def _img(path: str, alt: str) -> str:
    src = f"{PLOT_DIR}/{posixpath.basename(path)}"  # beside report.html, local or in a bucket
    return f'<img class="plot" src="{html.escape(src)}" alt="{html.escape(alt)}">'


def sample_transcripts(transcripts: Iterable[dict], n: int = SAMPLE_TRANSCRIPTS) -> list[dict]:
    """From the latest step: the best and the worst dialogue by reward, then the last one without agreement.
    Streams, holding one step's dialogues, since a long run's transcripts outgrow memory."""
    latest_step, recent, last_disagreement = None, [], []
    for t in transcripts:
        step = t.get("step", 0)
        if latest_step is None or step > latest_step:
            latest_step, recent = step, []
        if step == latest_step:
            recent.append(t)
        if t.get("agreement_turn") is None:
            last_disagreement = [t]
    if not recent:
        return []
    recent.sort(key=lambda t: -math.inf if t.get("reward") is None else t["reward"])
    picks = [recent[-1], recent[0]] + last_disagreement
    unique = []
    for t in picks:
        if all(t is not u for u in unique):
            unique.append(t)
    return unique[:n]


def write_report(
    workdir: str,
    *,
    metrics_jsonl: str | None,
    eval_results: dict,
    transcripts_jsonl: str | None = None,
) -> str:
    """Writes workdir/report.html, its PNGs under workdir/report/ and workdir/report.md; returns report.html's path."""
    plot_dir = storage.join(workdir, PLOT_DIR)
    storage.makedirs(plot_dir)
    labels = {"A": "model A", "B": "model B", **eval_results.get("models", {})}
    metrics_lines = Records(metrics_jsonl, strict=False)
    transcript_lines = Records(transcripts_jsonl, strict=False)
    metrics = list(metrics_lines)
    samples = sample_transcripts(transcript_lines)

    no_metrics = (f"No training metrics yet ({metrics_jsonl or 'no metrics file given'} is missing or empty)."
                  if not metrics else None)
    plots = {
        "reward": plot_reward(metrics, storage.join(plot_dir, "reward.png")),
        "agreement": plot_agreement(metrics, storage.join(plot_dir, "agreement.png")),
        "diagnostics": plot_diagnostics(metrics, storage.join(plot_dir, "diagnostics.png")),
        "ca_scores": plot_ca_histogram(eval_results.get("ca_scores", {}), labels,
                                       storage.join(plot_dir, "ca_scores.png")),
    }
    tables = {
        "training": training_table(metrics),
        "conflict": conflict_table(eval_results, labels),
        "win_rates": win_rate_table(eval_results),
        "comparison": comparison_table(eval_results, labels),
        "capability": capability_table(eval_results, labels),
        "instruction_kinds": instruction_kind_table(eval_results, labels),
    }

    def table_or_missing(name: str, missing: str) -> str:
        return _html_table(tables[name]) if tables[name][1] else _missing(missing)

    skipped_lines = "".join(
        _missing(f"{count} unreadable line(s) skipped in {path}.")
        for path, count in ((metrics_jsonl, metrics_lines.unreadable), (transcripts_jsonl, transcript_lines.unreadable))
        if count
    )
    training_plots = "".join(
        _img(plots[name], alt)
        for name, alt in (("reward", "reward over training"), ("agreement", "agreement rate and rounds over training"),
                          ("diagnostics", "training diagnostics"))
        if plots[name] is not None
    )
    instruction_kinds = ""
    if tables["instruction_kinds"][1]:
        instruction_kinds = (f"<details><summary>Instruction following by constraint kind</summary>"
                             f"{_html_table(tables['instruction_kinds'])}</details>")
    ca_histogram = (_img(plots["ca_scores"], "histogram of CA scores") if plots["ca_scores"]
                    else _missing("No CA scores in these results."))
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = f"""
<h1>negojax evaluation report</h1>
<p class="meta">{html.escape(workdir if storage.is_remote(workdir) else os.path.abspath(workdir))} · generated {generated} ·
A = {html.escape(labels['A'])}, B = {html.escape(labels['B'])}</p>
{skipped_lines}
<h2>Model comparison</h2>
<p class="meta">Each model's two-order CA win rate against the other (the paper's comparison of base,
single-agent- and negotiation-trained models); 0.5 means even.</p>
{table_or_missing("comparison", "No pairwise comparison in these results.")}
<h2>Conflict resolution</h2>
{table_or_missing("conflict", "No conflict-resolution evaluation in these results.")}
<h2>Pairwise CA win rate (A against B)</h2>
<p class="meta">The judge compares each pair in both orders; a win or a loss counts only when both orders agree,
anything else is a tie. Win rate = (wins + ties / 2) / n, so 0.5 means even.</p>
{table_or_missing("win_rates", "No win-rate evaluation in these results.")}
<h2>Collective-Agency scores</h2>
{ca_histogram}
<h2>General-capability guard</h2>
<p class="meta">Strict accuracy: every constraint of a prompt holds; loose accuracy: constraints counted one by one.</p>
{table_or_missing("capability", "No capability evaluation in these results.")}
{instruction_kinds}
<h2>Training</h2>
{_missing(no_metrics) if no_metrics else _html_table(tables["training"]) + training_plots}
<h2>Sample transcripts</h2>
{"".join(dialogue_html(t, open_=True) for t in samples) if samples else _missing("No transcripts yet.")}
"""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>negojax report</title>'
            f"<style>{_CSS}</style><script>{_PLOT_CHECK}</script></head><body>{body}</body></html>\n")
    report_html = storage.join(workdir, "report.html")
    storage.write_text(report_html, page)

    sections = [("Model comparison", "comparison"), ("Conflict resolution", "conflict"), ("Pairwise CA win rate (A against B)", "win_rates"),
                ("General-capability guard", "capability"), ("Training (first and last step)", "training")]
    markdown = [f"# negojax evaluation report\n\nA = {labels['A']}, B = {labels['B']}. "
                "Plots and transcripts: report.html."]
    for title, name in sections:
        markdown.append(f"## {title}\n\n" + (_md_table(tables[name]) if tables[name][1] else "_missing_"))
    storage.write_text(storage.join(workdir, "report.md"), "\n\n".join(markdown) + "\n")
    return report_html


EVAL_RESULTS_FILE = "eval_results.json"


def write_run_report(workdir: str, eval_results: dict | None = None) -> str:
    """The report of a run directory from its metrics.jsonl, transcripts.jsonl and evaluation.
    `eval_results` (the structure above) are first written to workdir/eval_results.json; without
    them that file is read if it exists. Returns report.html's path."""
    results_path = storage.join(workdir, EVAL_RESULTS_FILE)
    if eval_results is not None:
        eval_results = plain(eval_results)
        storage.write_text(results_path, json.dumps(eval_results, indent=1))
    elif storage.exists(results_path):
        try:
            eval_results = json.loads(storage.read_text(results_path))
        except json.JSONDecodeError as error:
            raise ValueError(f"{results_path}: not valid JSON ({error}); rewrite it or remove "
                             "it") from None
    return write_report(workdir, metrics_jsonl=storage.join(workdir, "metrics.jsonl"),
                        eval_results=eval_results or {},
                        transcripts_jsonl=storage.join(workdir, "transcripts.jsonl"))


def main(argv: Sequence[str] | None = None) -> str:
    """python -m negojax.eval.report WORKDIR: the report from WORKDIR's metrics.jsonl, transcripts.jsonl and
    eval_results.json (the structure above), whichever exist."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m negojax.eval.report", description=main.__doc__)
    parser.add_argument("workdir")
    try:
        path = write_run_report(parser.parse_args(argv).workdir)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    print(path)
    return path


if __name__ == "__main__":
    main()

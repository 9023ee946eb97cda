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
    "conflict_by_parties": {"A": {"greedy": {"2": ConflictMetrics, "3": ...}}, "B": ...},
    "environment": {"name", "outcomes": {"A": {"greedy": Summary}, "B": ..., "A-B": ...},
                    "by_parties": {"A": {"greedy": {"2": Summary, ...}}, ...}},  # computed outcomes
    "win_rates": {"conflict": WinRate, "conflict_sampled": WinRate,                # A against B
                  "open_ended": WinRate},              # "conflict": the first decoding's
    "capability": {"instructions": {"A": InstructionScores, "B": InstructionScores},
                   "reasoning": {"A": ReasoningScores, "B": ReasoningScores},
                   "gsm8k": {"A": ..., "B": ...} or {"skipped": "why"}},
    "ca_scores": {"A": [float, ...], "B": [float, ...]},                           # per dialogue, 0..5
    "process": {"A": {"greedy": ProcessMetrics, ...}, "B": {...}},                 # conflict dialogues
    "calibration": calibration.calibrate(...),          # a sample of the CA scores, scored again
  }
  ConflictMetrics = metrics.conflict_metrics(...), WinRate = metrics.win_rate(...),
  InstructionScores = instructions.score_instructions(...), ReasoningScores = reasoning.score_reasoning(...),
  ProcessMetrics = process.process_metrics(...);
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
from negojax.rewards.reliability import confusion_matrix

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


def plot_calibration(pairs: Sequence[Sequence[float]], path: str) -> str | None:
    """The two scorings of the calibration sample as a confusion heatmap of rounded scores."""
    pairs = np.asarray(pairs, np.float64).reshape(-1, 2)  # a failed score is None in the JSON
    pairs = pairs[~np.isnan(pairs).any(axis=1)]
    if not len(pairs):
        return None
    counts = confusion_matrix(pairs[:, 0], pairs[:, 1])
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", origin="lower")
    for (i, j), count in np.ndenumerate(counts):
        if count:
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > counts.max() / 2 else "#1f2328")
    ax.plot([-0.5, 5.5], [-0.5, 5.5], color="#d1242f", linewidth=1, alpha=0.6)
    ax.set(xlabel="second scoring", ylabel="first scoring", title="CA scores scored twice",
           xticks=range(6), yticks=range(6))
    fig.colorbar(image, ax=ax, label="final solutions")
    return _save(fig, path)


def calibration_section(eval_results: dict, plot_dir: str) -> str:
    """The judge-calibration section: the re-scored sample's four figures and its heatmap."""
    c = eval_results.get("calibration")
    if not c:
        return "<h2>Judge calibration</h2>" + _missing("No judge calibration in these results.")
    plot = plot_calibration(c["pairs"], storage.join(plot_dir, "calibration.png"))
    return f"""<h2>Judge calibration</h2>
<p class="meta">A sample of the CA-scored final solutions, scored again: {html.escape(c["description"])}.
Scores are rounded to 0..5 for agreement and kappa; Pearson r uses the raw scores.</p>
{_html_table(calibration_table(eval_results))}
{_img(plot, "the two scorings of the calibration sample") if plot else _missing("No item was scored twice.")}"""


# ---- tables, as (header, rows) so the HTML and the Markdown say the same thing ----

def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _with_ci(metrics: dict, key: str, ci_key: str | None = None) -> str:
    ci = metrics.get(ci_key or f"{key}_ci")
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
    header = ["question set", "n", "win rate, orders averaged [95% CI]", "wins", "losses", "ties",
              "strict win rate [95% CI]"]
    rows = [[name, _fmt(w.get("n")), _with_ci(w, "win_rate"), _fmt(w.get("wins")), _fmt(w.get("losses")),
             _fmt(w.get("ties")), _with_ci(w, "strict_win_rate")]
            for name, w in results.get("win_rates", {}).items()]
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
        rate, ci = w.get("win_rate"), w.get("win_rate_ci")
        mirrored = None if ci is None or None in ci else [1 - ci[1], 1 - ci[0]]
        return {"win_rate": None if rate is None else 1 - rate, "win_rate_ci": mirrored}

    rows = []
    for name in ("A", "B"):
        info = results.get("trained_by", {}).get(name)
        cells = [labels[name], info["setting"] if info else "base", _fmt(info["steps"]) if info else "0"]
        cells += [_with_ci(w if name == "A" else for_b(w), "win_rate") for w in wins.values()]
        cells.append(_with_ci(conflict[name].get(decoding, {}), "mean_ca_score"))
        rows.append(cells)
    return header, rows


def environment_table(results: dict, labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """An environment's own outcomes (resource_split's agreement, welfare, ...) per model and
    decoding, each with its interval."""
    environment = results.get("environment", {})
    outcomes = environment.get("outcomes", {})
    # The reference policies (take-all, even split, ...) beside the models, with no decoding.
    runs = [(labels.get(name, name), decoding, m) for name, by_decoding in outcomes.items()
            for decoding, m in by_decoding.items() if name != "A-B"]
    runs += [(f"reference: {name}", "-", m)
             for name, m in environment.get("references", {}).items()]
    runs += [("A - B (paired over the same tasks)", decoding, m)
             for decoding, m in outcomes.get("A-B", {}).items()]
    # Each model in seat 0 against each fixed opponent in the others.
    for opponent, by_model in environment.get("against", {}).items():
        runs += [(f"{'A - B (paired)' if name == 'A-B' else labels.get(name, name)} against "
                  f"{opponent}", decoding, m)
                 for name, by_decoding in by_model.items() for decoding, m in by_decoding.items()]
    metrics = sorted({k for _, _, m in runs for k in m if k != "n" and not k.endswith("_ci")})
    rows = [[name, decoding, str(m["n"])] + [_with_ci(m, k) for k in metrics]
            for name, decoding, m in runs]
    return ["model", "decoding", "n"] + metrics, rows


def party_table(results: dict, labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Agreement and the main metrics per party count, per model and decoding; no rows when the
    tasks have one party count, where it would repeat the overall table."""
    names = {"A-B": "A - B (paired over the same tasks)"}
    if "conflict_by_parties" in results:
        by_parties = results["conflict_by_parties"]
        metrics = ["agreement_rate", "mean_rounds", "mean_ca_score"]
    else:
        by_parties = results.get("environment", {}).get("by_parties", {})
        metrics = sorted({k for by_decoding in by_parties.values() for by_n in by_decoding.values()
                          for m in by_n.values() for k in m if k != "n" and not k.endswith("_ci")})
    rows = [[names.get(name) or labels.get(name, name), decoding, parties, _fmt(m.get("n"))]
            + [_with_ci(m, k) for k in metrics]
            for name, by_decoding in by_parties.items() for decoding, by_n in by_decoding.items()
            for parties, m in by_n.items()]
    if len({row[2] for row in rows}) < 2:
        rows = []
    return ["model", "decoding", "parties", "n"] + metrics, rows


def capability_table(results: dict, labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    header = ["set", "metric", f"{labels['A']} [95% CI]", f"{labels['B']} [95% CI]", "difference (A - B)"]
    rows = []
    for name, entry in results.get("capability", {}).items():
        if "skipped" in entry:
            rows.append([name, entry["skipped"], "", "", ""])
            continue
        a, b = entry.get("A", {}), entry.get("B", {})
        for metric in [k for k, v in a.items() if isinstance(v, float)]:
            diff = a[metric] - b[metric] if isinstance(b.get(metric), float) else None
            rows.append([name, metric, _with_ci(a, metric), _with_ci(b, metric), _fmt(diff)])
    return header, rows


def instruction_id_table(results: dict, labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Strict and loose accuracy per IFEval instruction id, so a regression can be traced to the
    instructions it hits."""
    entry = results.get("capability", {}).get("instructions", {})
    a, b = entry.get("A", {}).get("per_instruction", {}), entry.get("B", {}).get("per_instruction", {})
    header = ["IFEval instruction", f"{labels['A']} strict", f"{labels['A']} loose", f"{labels['B']} strict",
              f"{labels['B']} loose"]
    return header, [[iid, _fmt(a.get(iid, {}).get("strict")), _fmt(a.get(iid, {}).get("loose")),
                     _fmt(b.get(iid, {}).get("strict")), _fmt(b.get(iid, {}).get("loose"))]
                    for iid in sorted(set(a) | set(b))]


def calibration_table(results: dict) -> tuple[list[str], list[list[str]]]:
    c = results.get("calibration") or {}
    header = ["sampled", "scored twice", "exact agreement", "within one", "Pearson r",
              "weighted kappa (quadratic)"]
    return header, [[str(c["sampled"]), str(c["n"]), *(
        _fmt(c[k]) for k in ("exact", "within_1", "pearson_r", "weighted_kappa"))]] if c else []


def training_table(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    keys = ("reward_mean", "agreement_rate", "mean_rounds", "kl", "entropy", "grad_norm", "skipped_updates",
            "judge_calls", "judge_failures", "samples_dropped", "eval_agreement_rate", "eval_mean_rounds")
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


# ---- process metrics (negojax.eval.process): how the dialogues reached their outcome ----

_OUTCOME_COLORS = {"capitulation": "#d1242f", "convergence": "#1a7f37", "neither": "#8c959f"}
_SEAT_STYLES = ("-", "--", ":", "-.")


def _process_runs(results: dict, labels: dict[str, str]) -> list[tuple[str, str, str, dict]]:
    """(model key, its label, decoding, ProcessMetrics) for every evaluated model and decoding."""
    return [(key, labels.get(key, key), decoding, metrics)
            for key, by_decoding in results.get("process", {}).items()
            for decoding, metrics in by_decoding.items()]


def plot_process_movement(runs: list[tuple[str, str, str, dict]], path: str) -> str | None:
    """Mean movement from the seat's own opening at each of its turns: one panel per model (its first
    decoding, so the panels compare like with like), one line per seat."""
    first = {}
    for run in runs:
        if run[3].get("movement_by_turn"):
            first.setdefault(run[0], run)
    if not first:
        return None
    fig = Figure(figsize=(9, 3.6))
    for i, (key, label, decoding, metrics) in enumerate(first.values()):
        ax = fig.add_subplot(1, len(first), i + 1)
        for seat, series in enumerate(metrics["movement_by_turn"]):
            ax.plot(np.arange(1, len(series) + 1), series, marker="o", color=_COLORS.get(key),
                    linestyle=_SEAT_STYLES[seat % len(_SEAT_STYLES)], label=f"seat {seat + 1}")
        ax.set(xlabel="the seat's turn", ylabel="1 - similarity to its opening", ylim=(0, 1.02),
               title=f"{key}: {decoding}, {metrics.get('similarity', 'lexical')} (n={metrics.get('n')})")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Position movement per turn")
    return _save(fig, path)


def plot_process_outcomes(runs: list[tuple[str, str, str, dict]], path: str) -> str | None:
    """Left: the share of dialogues ending in capitulation, convergence or neither; right: how often
    the final solution names each persona's core value and name. Bars carry their 95% intervals."""
    if not runs:
        return None
    fig = Figure(figsize=(9, 3.6))
    names = [f"{key}\n{decoding}" for key, _, decoding, _ in runs]  # the page says what A and B are
    x = np.arange(len(runs))

    def bars(ax, keys, colors, title):
        width = 0.8 / len(keys)
        for i, (key, color) in enumerate(zip(keys, colors)):
            means = np.array([m.get(key, {}).get("mean", np.nan) for *_, m in runs], float)
            cis = np.array([m.get(key, {}).get("ci", [np.nan, np.nan]) for *_, m in runs], float)
            errors = np.clip(np.abs(cis - means[:, None]).T, 0, None)
            ax.bar(x + (i - (len(keys) - 1) / 2) * width, np.nan_to_num(means), width, yerr=np.nan_to_num(errors),
                   color=color, capsize=3, label=key.replace("_", " "))
        ax.set(xticks=x, ylim=(0, 1.05), title=title, ylabel="share")
        ax.set_xticklabels(names, fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7)

    bars(fig.add_subplot(1, 2, 1), list(_OUTCOME_COLORS), list(_OUTCOME_COLORS.values()), "Dialogue outcome")
    bars(fig.add_subplot(1, 2, 2), ["core_value_named", "all_core_values_named", "name_named"],
         ["#1f6feb", "#6639ba", "#9a6700"], "Named in the final solution")
    return _save(fig, path)


def process_table(runs: list[tuple[str, str, str, dict]]) -> tuple[list[str], list[list[str]]]:
    keys = ("rounds", "final_drift", "capitulation", "convergence", "neither", "core_value_named",
            "all_core_values_named", "name_named")
    header = ["model", "decoding", "n", "rounds to agreement", "final movement", "capitulation", "convergence",
              "neither", "core value named", "all core values named", "name named"]

    # Process metrics nest {"mean", "n", "ci"}, since n differs per metric.
    return header, [[label, decoding, _fmt(m.get("n"))] + [_with_ci(m.get(k, {}), "mean", "ci") for k in keys]
                    for _, label, decoding, m in runs]


def process_section(results: dict, labels: dict[str, str], plot_dir: str) -> tuple[str, str]:
    """The report's process section, as (HTML, Markdown): its table and its two plots."""
    runs = _process_runs(results, labels)
    title = "Negotiation process"
    table = process_table(runs)
    if not table[1]:
        return f"<h2>{title}</h2>" + _missing("No process metrics in these results."), f"## {title}\n\n_missing_"
    plots = [(plot_process_movement(runs, storage.join(plot_dir, "process_movement.png")),
              "position movement per turn and seat"),
             (plot_process_outcomes(runs, storage.join(plot_dir, "process_outcomes.png")),
              "capitulation, convergence and named core values")]
    measures = {
        "lexical": "lexical (a turn is the bag of Porter stems of its content words; similarity is the cosine of "
                   "their counts)",
        "judge": "the judge's P(yes) when asked whether the two turns agree on the core solution"}
    used = sorted({m.get("similarity", "lexical") for *_, m in runs})
    note = (f"Similarity of two turns: {'; '.join(measures.get(u, u) for u in used)}. A seat's movement at a turn "
            "is 1 - its similarity to the seat's own opening turn. Capitulation: a seat's last turn is far closer "
            "to another seat's opening than to its own while that seat barely moved; convergence: every seat came "
            "closer to the others' openings and the last turns are closer to each other than the openings were. "
            "A core value is named when half its content words appear in the final solution. Means with 95% "
            "bootstrap intervals; rounds count agreed dialogues only.")
    page = (f"<h2>{title}</h2><p class=\"meta\">{html.escape(note)}</p>{_html_table(table)}"
            + "".join(_img(p, alt) for p, alt in plots if p is not None))
    return page, f"## {title}\n\n{_md_table(table)}"


def _environment_section(eval_results: dict, table) -> str:
    if not table[1]:
        return ""
    name = html.escape(eval_results["environment"]["name"])
    return (f"<h2>Environment outcomes: {name}</h2><p class=\"meta\">Measured by the environment "
            "from each held-out dialogue; 95% intervals (Wilson's for rates, the bootstrap "
            "otherwise). A rate over deals (such as pareto_optimal) counts only the dialogues "
            "that agreed. The reference policies impose a deal computed from each game alone "
            "(take-all, even split, uniform random, seat 0's best guess from its own values, "
            "the welfare optima): a model is read against them.</p>" + _html_table(table))


def _party_section(table) -> str:
    if not table[1]:
        return ""
    return ("<h2>By party count</h2><p class=\"meta\">The held-out tasks of each party count apart, "
            "95% bootstrap intervals.</p>" + _html_table(table))


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
        "environment": environment_table(eval_results, labels),
        "parties": party_table(eval_results, labels),
        "instruction_ids": instruction_id_table(eval_results, labels),
        "calibration": calibration_table(eval_results),
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
    instruction_ids = ""
    if tables["instruction_ids"][1]:
        instruction_ids = (f"<details><summary>Instruction following by IFEval instruction id</summary>"
                           f"{_html_table(tables['instruction_ids'])}</details>")
    ca_histogram = (_img(plots["ca_scores"], "histogram of CA scores") if plots["ca_scores"]
                    else _missing("No CA scores in these results."))
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = workdir if storage.is_remote(workdir) else os.path.abspath(workdir)
    if eval_results:
        process_html, process_md = process_section(eval_results, labels, plot_dir)
        evaluation = f"""
<h2>Model comparison</h2>
<p class="meta">Each model's two-order CA win rate against the other (the paper's comparison of base,
single-agent- and negotiation-trained models); 0.5 means even.</p>
{table_or_missing("comparison", "No pairwise comparison in these results.")}
{_environment_section(eval_results, tables["environment"])}
<h2>Conflict resolution</h2>
{table_or_missing("conflict", "No conflict-resolution evaluation in these results.")}
{_party_section(tables["parties"])}
<h2>Pairwise CA win rate (A against B)</h2>
<p class="meta">The judge compares each pair in both orders. Win rate: P(A better) averaged over the two orders,
so a judge's taste for a position cancels; 0.5 means even. Wins, losses and ties count the pairs where both
orders agree (a win or a loss) or not (a tie), the paper's stricter rule: strict win rate = (wins + ties / 2) / n.</p>
{table_or_missing("win_rates", "No win-rate evaluation in these results.")}
<h2>Collective-Agency scores</h2>
{ca_histogram}
{calibration_section(eval_results, plot_dir)}
<h2>General-capability guard</h2>
<p class="meta">Instructions: IFEval's own checkers. Prompt-level accuracy counts a prompt when every one of its
instructions holds, instruction-level counts instructions one by one; strict judges the answer as written, loose
also accepts it with its first or last line or its markdown asterisks removed. Reasoning: exact-match accuracy.</p>
{table_or_missing("capability", "No capability evaluation in these results.")}
{instruction_ids}
{process_html}"""
        title = "negojax evaluation report"
        models = f" · A = {html.escape(labels['A'])}, B = {html.escape(labels['B'])}"
    else:
        # A training run's report: what training measured, and the one command that adds the
        # evaluation's sections (rather than a page of empty ones).
        evaluation = f"<p class=\"meta\">{html.escape(not_evaluated(where))}</p>"
        title, models = "negojax training report", ""
    body = f"""
<h1>{title}</h1>
<p class="meta">{html.escape(where)} · generated {generated}{models}</p>
{skipped_lines}
{evaluation}
<h2>Training</h2>
{_missing(no_metrics) if no_metrics else _html_table(tables["training"]) + training_plots}
<h2>Sample transcripts</h2>
{"".join(dialogue_html(t, open_=True) for t in samples) if samples else _missing("No transcripts yet.")}
"""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>negojax report</title>'
            f"<style>{_CSS}</style><script>{_PLOT_CHECK}</script></head><body>{body}</body></html>\n")
    report_html = storage.join(workdir, "report.html")
    storage.write_text(report_html, page)

    training = ("Training (first and last step)", "training")
    if not eval_results:
        markdown = [f"# negojax training report\n\n{not_evaluated(where)} Plots and transcripts: "
                    "report.html.", _md_section(*training, tables)]
        storage.write_text(storage.join(workdir, "report.md"), "\n\n".join(markdown) + "\n")
        return report_html
    sections = [("Model comparison", "comparison"), ("Environment outcomes", "environment"),
                ("Conflict resolution", "conflict"),
                ("Pairwise CA win rate (A against B)", "win_rates"), ("Judge calibration", "calibration"),
                ("General-capability guard", "capability"), training]
    markdown = [f"# negojax evaluation report\n\nA = {labels['A']}, B = {labels['B']}. "
                "Plots and transcripts: report.html."]
    markdown += [_md_section(title, name, tables) for title, name in sections]
    if tables["parties"][1]:
        markdown.append(f"## By party count\n\n{_md_table(tables['parties'])}")
    markdown.append(process_md)
    storage.write_text(storage.join(workdir, "report.md"), "\n\n".join(markdown) + "\n")
    return report_html


def _md_section(title: str, name: str, tables: dict) -> str:
    return f"## {title}\n\n" + (_md_table(tables[name]) if tables[name][1] else "_missing_")


def not_evaluated(workdir: str) -> str:
    """What a report without evaluation results says in place of the evaluation's sections."""
    return ("No evaluation has run on this workdir yet; `python -m negojax.main "
            f"--config=<this run's config> --config.mode=eval --config.workdir={workdir}` adds "
            "the model comparison, outcomes, win rates, CA scores and capability guard.")


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

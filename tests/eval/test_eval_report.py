import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from negojax.data.records import Persona, Task
from negojax.eval.driver import capability_guard, conflict_question, evaluate_conflicts, win_rates
from negojax.eval.instructions import instruction_prompts
from negojax.eval.calibration import calibrate
from negojax.eval.process import process_metrics
from negojax.eval.reasoning import reasoning_problems
from negojax.eval.report import EVAL_RESULTS_FILE, main, sample_transcripts, write_report

PLOTS = ("reward.png", "agreement.png", "diagnostics.png", "ca_scores.png", "process_movement.png",
         "process_outcomes.png", "calibration.png")
HOSTILE = "<script>alert('x')</script> & <b>not bold</b>"


def training_metrics(path, steps=60):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for step in range(steps):
            mean = 1.0 + 2.5 * step / steps + rng.normal(0, 0.1)
            f.write(json.dumps({
                "step": step, "reward_mean": mean, "reward_std": 0.6, "reward_min": max(0.0, mean - 1.5),
                "reward_max": min(5.0, mean + 1.2), "agreement_rate": min(1.0, 0.85 + step / 500),
                "mean_rounds": 2.4 - step / 150, "kl": 0.01 * step, "clip_fraction": 0.1, "entropy": 1.5 - step / 200,
                "grad_norm": 1.0 + rng.random(), "skipped_updates": 0, "time_rollout_s": 3.0, "time_judge_s": 1.0,
                "time_update_s": 0.5,
            }) + "\n")
        f.write('{"step": 60, "reward_mean": 1.')  # a run killed mid-write


PERSONAS = (
    Persona("Cost Minimiser", "frugality", "the lowest total cost", "waste", "numbers first", id="cost"),
    Persona("Quality Maximiser", "excellence", "the best result", "cutting corners", "patient", id="quality"),
)


def tasks(n=12):
    return [Task(f"eval-{i:03d}", "eval", "everyday", f"Dilemma {i}: a shared budget.", PERSONAS, "cost-quality")
            for i in range(n)]


def scripted_dialogues(quality):
    """A stand-in for a model-backed negotiation: deterministic dialogues whose agreement and the length of
    the final solution grow with `quality`, in the engine's transcript schema."""
    def run(task_list, decoding):
        out = []
        for i, task in enumerate(task_list):
            agreed = (i * 7 + len(decoding)) % 10 < quality * 10
            n_turns = 1 + (i % 3) if agreed else 7
            names = [p.name for p in task.personas]
            turns = [{"speaker": k % 2, "persona": names[k % 2], "num_tokens": 12,
                      "text": f"Turn {k} of {task.id}: " + (HOSTILE if k == 0 else "I propose we share.")}
                     for k in range(n_turns)]
            solution = f"A shared plan for {task.id}" + " that serves everyone" * int(quality * (i % 5 + 1))
            out.append({"step": 0, "scenario_id": task.id, "personas": names, "turns": turns,
                        "agreement_turn": n_turns - 1 if agreed else None, "final_solution": solution,
                        "reward": 0.0, "reward_components": {}})
        return out
    return run


def length_ca_score(dilemmas, personas, solutions):
    # A deterministic stand-in for the judge: longer solutions score higher, capped at 5.
    return np.array([min(5.0, len(s) / 40) for s in solutions])


def careful_model(prompts):
    # Follows a couple of instructions (lowercase, no commas) and does arithmetic on nothing: a deterministic
    # stand-in for a model.
    return [p.lower().replace(",", "") for p in prompts]


def sloppy_model(prompts):
    return [p.upper() for p in prompts]


def evaluation(workdir):
    conflict_a = evaluate_conflicts(scripted_dialogues(0.95), tasks(), length_ca_score, n_resamples=200)
    conflict_b = evaluate_conflicts(scripted_dialogues(0.7), tasks(), length_ca_score, n_resamples=200)
    questions = [conflict_question(task) for task in tasks()]
    longer = lambda q, a, b: np.array([float(len(x) > len(y)) for x, y in zip(a, b)])  # noqa: E731
    answers_a = [t["final_solution"] + " and more" for t in conflict_a["greedy"].transcripts]
    answers_b = [t["final_solution"] for t in conflict_b["greedy"].transcripts]
    with open(os.path.join(workdir, "transcripts.jsonl"), "w") as f:
        for t, score in zip(conflict_a["greedy"].transcripts, conflict_a["greedy"].ca_scores):
            f.write(json.dumps({**t, "reward": score, "reward_components": {"ca": score}}) + "\n")
    return {
        "models": {"A": "trained (step 60)", "B": "base"},
        "conflict": {d: c.metrics for d, c in conflict_a.items()},
        "conflict_baseline": {d: c.metrics for d, c in conflict_b.items()},
        "win_rates": {"conflict": win_rates(longer, questions, answers_a, answers_b, n_resamples=200),
                      "open_ended": win_rates(longer, questions, answers_b, answers_a, n_resamples=200)},
        "capability": capability_guard(careful_model, sloppy_model, instructions=instruction_prompts(30),
                                       problems=reasoning_problems(12), gsm8k_data_dir=os.path.join(workdir, "tfds")),
        "ca_scores": {"A": conflict_a["greedy"].ca_scores, "B": conflict_b["greedy"].ca_scores},
        "process": {key: {d: process_metrics(c.transcripts, [t.personas for t in tasks()], n_resamples=200)
                          for d, c in conflict.items()} for key, conflict in (("A", conflict_a), ("B", conflict_b))},
        "trained_by": {"A": {"setting": "negotiation", "steps": 60, "model_path": "base", "judge": "local"},
                       "B": None},
        # A second judge that scores a point lower: the calibration of a judge against a stricter one.
        "calibration": calibrate([(t.dilemma, t.personas, d["final_solution"])
                                  for t, d in zip(tasks(), conflict_a["greedy"].transcripts)],
                                 conflict_a["greedy"].ca_scores,
                                 lambda *args: np.maximum(length_ca_score(*args) - 1, 0), samples=8,
                                 seed=0, method="second_member"),
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    training_metrics(os.path.join(workdir, "metrics.jsonl"))
    results = evaluation(workdir)
    path = write_report(workdir, metrics_jsonl=os.path.join(workdir, "metrics.jsonl"), eval_results=results,
                        transcripts_jsonl=os.path.join(workdir, "transcripts.jsonl"))
    return workdir, path, results


def test_report_files_exist_and_page_references_every_plot(report):
    workdir, path, _ = report
    assert path == os.path.join(workdir, "report.html")
    page = open(path).read()
    for name in PLOTS:
        assert os.path.getsize(os.path.join(workdir, "report", name)) > 5000
        assert f'src="report/{name}"' in page
    assert os.path.exists(os.path.join(workdir, "report.md"))


def test_report_escapes_transcript_text(report):
    page = open(report[1]).read()
    assert "<script>alert" not in page and "<b>not bold</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;not bold&lt;/b&gt;" in page


def test_report_tables_carry_the_numbers(report):
    workdir, path, results = report
    page, markdown = open(path).read(), open(os.path.join(workdir, "report.md")).read()
    greedy = results["conflict"]["greedy"]
    assert f"{greedy['agreement_rate']:.3f} [{greedy['agreement_rate_ci'][0]:.3f}" in markdown
    win = results["win_rates"]["conflict"]
    assert (f"| conflict | {win['n']} | {win['win_rate']:.3f} [{win['win_rate_ci'][0]:.3f}, "
            f"{win['win_rate_ci'][1]:.3f}] | {win['wins']} | {win['losses']} | {win['ties']} |"
            in markdown)
    instructions = results["capability"]["instructions"]
    for metric in ("prompt_strict_accuracy", "prompt_loose_accuracy", "instruction_strict_accuracy",
                   "instruction_loose_accuracy"):
        a, b = instructions["A"], instructions["B"]
        assert (f"| instructions | {metric} | {a[metric]:.3f} [{a[metric + '_ci'][0]:.3f}, "
                f"{a[metric + '_ci'][1]:.3f}] | {b[metric]:.3f} [") in markdown, metric
    reasoning = results["capability"]["reasoning"]["A"]
    assert f"| reasoning | accuracy | {reasoning['accuracy']:.3f} [{reasoning['accuracy_ci'][0]:.3f}, " in markdown
    assert "skipped: gsm8k not prepared in" in page and "skipped: gsm8k not prepared in" in markdown
    assert "1 unreadable line(s) skipped" in page
    assert "trained (step 60)" in page
    no_comma = instructions["A"]["per_instruction"]["punctuation:no_comma"]
    assert (f"<td>punctuation:no_comma</td><td class=\"num\">{no_comma['strict']:.3f}</td>"
            f"<td class=\"num\">{no_comma['loose']:.3f}</td>") in page


def test_report_says_what_is_missing(tmp_path):
    path = write_report(str(tmp_path), metrics_jsonl=str(tmp_path / "metrics.jsonl"),
                        eval_results={"models": {"A": "trained", "B": "base"}})
    page = open(path).read()
    assert "No training metrics yet" in page and "No transcripts yet." in page
    assert "No win-rate evaluation" in page and "No CA scores" in page
    assert "<img" not in page
    assert "_missing_" in open(tmp_path / "report.md").read()


def test_a_training_run_report_shows_training_and_the_command_that_evaluates(tmp_path):
    """Before any evaluation the report is a training report: no empty evaluation sections,
    the training table and plots, and the command that adds the evaluation."""
    training_metrics(tmp_path / "metrics.jsonl", steps=5)
    path = write_report(str(tmp_path), metrics_jsonl=str(tmp_path / "metrics.jsonl"), eval_results={})
    page, markdown = open(path).read(), open(tmp_path / "report.md").read()
    assert "negojax training report" in page and "negojax training report" in markdown
    assert "_missing_" not in markdown and "in these results" not in page
    for text in (page, markdown):
        assert f"--config.mode=eval --config.workdir={tmp_path}" in text
    assert "Model comparison" not in page and "Pairwise CA win rate" not in page
    assert "## Training (first and last step)" in markdown and 'src="report/reward.png"' in page


def test_command_line_reads_the_workdir(tmp_path):
    training_metrics(tmp_path / "metrics.jsonl", steps=5)
    results = {"win_rates": {"conflict": {"n": 4, "wins": 2, "losses": 1, "ties": 1, "win_rate": 0.625,
                                          "win_rate_ci": [0.25, 1.0]}}}
    (tmp_path / EVAL_RESULTS_FILE).write_text(json.dumps(results))
    path = main([str(tmp_path)])
    page = open(path).read()
    assert "0.625 [0.250, 1.000]" in page and 'src="report/reward.png"' in page
    (tmp_path / EVAL_RESULTS_FILE).write_text("{broken")
    with pytest.raises(SystemExit, match="eval_results.json: not valid JSON"):
        main([str(tmp_path)])


def test_sample_transcripts_pick_best_and_worst_of_the_latest_step_and_a_disagreement():
    def t(name, step, reward, agreed=True):
        return {"name": name, "step": step, "reward": reward, "agreement_turn": 0 if agreed else None}

    rows = [t("old-best", 1, 5.0), t("stuck", 1, 0.0, agreed=False), t("mid", 2, 2.0), t("best", 2, 4.0),
            t("worst", 2, 1.0)]
    assert [x["name"] for x in sample_transcripts(iter(rows))] == ["best", "worst", "stuck"]
    assert [x["name"] for x in sample_transcripts(iter(rows[:1]))] == ["old-best"]
    assert sample_transcripts(iter([])) == []


def test_evaluate_conflicts_needs_one_solved_transcript_per_task():
    def shuffled(task_list, decoding):
        return list(reversed(scripted_dialogues(1.0)(task_list, decoding)))

    def unsolved(task_list, decoding):
        return [{**t, "final_solution": None} for t in scripted_dialogues(1.0)(task_list, decoding)]

    with pytest.raises(ValueError, match="one transcript per task, in task order"):
        evaluate_conflicts(shuffled, tasks(3), length_ca_score)
    with pytest.raises(ValueError, match="must write a final solution"):
        evaluate_conflicts(unsolved, tasks(3), length_ca_score)


def test_conflict_question_names_the_parties():
    question = conflict_question(tasks(1)[0])
    assert question.startswith("Dilemma 0") and "Cost Minimiser" in question and "Quality Maximiser" in question
    open_ended = Task("open-001", "open_ended", "open_ended", "How should a city grow?", (), "")
    assert conflict_question(open_ended) == "How should a city grow?"


def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium chromium-driver)")
    return found


def run_chromium(binary, tmp_path, *args):
    profile = tmp_path / "chromium-profile"
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


def plots_loaded(binary, tmp_path, page):
    dom = run_chromium(binary, tmp_path, "--virtual-time-budget=5000", "--dump-dom", f"file://{page}").stdout
    found = re.search(r'data-plots-loaded="(\d+)/(\d+)"', dom)
    assert found, "the page's load hook did not run"
    return int(found.group(1)), int(found.group(2))


def test_report_renders_in_headless_chromium(report, tmp_path):
    """The whole report as a browser shows it: the paper-style comparison table, the judge
    calibration (its figures and heatmap), the process plots and every other plot."""
    binary = chromium()
    workdir, path, _ = report
    assert plots_loaded(binary, tmp_path, path) == (len(PLOTS), len(PLOTS))
    dom = run_chromium(binary, tmp_path, "--virtual-time-budget=5000", "--dump-dom", f"file://{path}").stdout
    for heading in ("Model comparison", "Judge calibration", "Negotiation process"):
        section = dom[dom.index(f"<h2>{heading}</h2>"):]
        section = section[:section.index("<h2>", 5)]
        assert "<table>" in section, heading
    assert "negotiation" in dom[dom.index("<h2>Model comparison</h2>"):dom.index("<h2>Conflict resolution</h2>")]

    screenshot = tmp_path / "report.png"
    run_chromium(binary, tmp_path, "--hide-scrollbars", f"--screenshot={screenshot}", "--window-size=1200,4200",
                 f"file://{path}")
    import matplotlib.image

    pixels = (matplotlib.image.imread(str(screenshot))[..., :3] * 255).round().astype(int)
    # The page's own styling is grey text on white; strongly coloured pixels come from the plots.
    saturated = (pixels.max(-1) - pixels.min(-1)) > 60
    assert saturated.sum() > 50_000, "the page rendered without its plots"
    reward_line = np.abs(pixels - np.array([0x1F, 0x6F, 0xEB])).sum(-1) < 30
    assert reward_line.sum() > 1000, "the reward curve is not on the page"


def test_chromium_check_notices_a_broken_plot(report, tmp_path):
    binary = chromium()
    workdir, path, _ = report
    broken = tmp_path / "broken"
    shutil.copytree(workdir, broken)
    os.remove(broken / "report" / "reward.png")
    assert plots_loaded(binary, tmp_path, broken / "report.html") == (len(PLOTS) - 1, len(PLOTS))


def test_report_shows_the_process_section(report):
    workdir, path, results = report
    page, markdown = open(path).read(), open(os.path.join(workdir, "report.md")).read()
    greedy = results["process"]["A"]["greedy"]
    capitulation = greedy["capitulation"]
    assert f"| trained (step 60) | greedy | {greedy['n']} | " in markdown
    assert f"{capitulation['mean']:.3f} [{capitulation['ci'][0]:.3f}, {capitulation['ci'][1]:.3f}]" in markdown
    assert "<h2>Negotiation process</h2>" in page
    assert page.index("process_movement.png") > page.index("<h2>Negotiation process</h2>")

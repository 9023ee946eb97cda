"""Judge calibration in every evaluation: the eval mode's CLI on the tiny config with an
ensemble of two real HTTP judges that disagree by a fixed rule, so the calibration's statistics
are known by hand; the report shows them and its heatmap in headless Chromium. The re-scoring
with the parties in the other order, against a real HTTP judge that reads the order."""
import json
import math

import numpy as np
import pytest

from negojax.data import load_tasks
from negojax.eval.calibration import calibrate, reordered
from negojax.eval.report import write_run_report
from negojax.rewards import HttpJudge
from openai_server import Reply, start_server, stop_server
from test_eval_report import chromium, plots_loaded
from trainer_runs import run_main

TASKS = load_tasks("eval")[:2]
# CA scores per task: the first judge 1 and 4, the second 2 and 3.
SCORES = {"first": ("1", "4"), "second": ("2", "3")}


def judge_that_scores(scores):
    def reply(index, body):
        text = body["messages"][-1]["content"]
        if text.endswith("yes or no."):
            return Reply("yes")
        if text.endswith("A or B."):
            return Reply("A")
        return Reply(next(s for task, s in zip(TASKS, scores) if task.dilemma in text))
    return reply


def weighted_kappa(a, b, levels=6):
    """Cohen's quadratically weighted kappa, written out: 1 - sum(w O) / sum(w E)."""
    observed = np.zeros((levels, levels))
    for x, y in zip(a, b):
        observed[x, y] += 1 / len(a)
    expected = np.outer(observed.sum(1), observed.sum(0))
    w = (np.arange(levels)[:, None] - np.arange(levels)[None, :]) ** 2
    return 1 - (w * observed).sum() / (w * expected).sum()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    servers = {name: start_server(judge_that_scores(s)) for name, s in SCORES.items()}
    workdir = tmp_path_factory.mktemp("calibrated")
    ensemble = tuple({"kind": "http", "base_url": s.url, "model": "judge"}
                     for s in servers.values())
    try:
        run_main("tiny_test", workdir, "--config.mode=eval", "--config.eval.decodings=greedy",
                 "--config.eval.capability_prompts=1", "--config.eval.reasoning_problems=1",
                 "--config.eval.open_ended_tasks=0", f"--config.judge.ensemble={ensemble!r}")
    finally:
        for server in servers.values():
            stop_server(server)
    with open(workdir / "eval_results.json", encoding="utf-8") as f:
        return workdir, json.load(f)


def test_two_judges_that_disagree_give_the_expected_kappa(evaluated):
    _, results = evaluated
    c = results["calibration"]
    # Both models' solutions of both tasks: (1, 2) twice and (4, 3) twice. Observed weighted
    # disagreement 1, expected by chance (1 + 4 + 4 + 1) / 4 = 2.5: kappa 1 - 1 / 2.5 = 0.6.
    assert c["method"] == "second_member" and c["sampled"] == c["n"] == 4
    assert sorted(map(tuple, c["pairs"])) == [(1, 2), (1, 2), (4, 3), (4, 3)]
    assert c["weighted_kappa"] == pytest.approx(0.6)
    assert c["weighted_kappa"] == pytest.approx(weighted_kappa([1, 1, 4, 4], [2, 2, 3, 3]))
    assert c["exact"] == 0.0 and c["within_1"] == 1.0 and c["pearson_r"] == pytest.approx(1.0)
    # The run's CA scores are the ensemble's mean: 1.5 and 3.5.
    assert sorted(results["ca_scores"]["A"]) == [1.5, 3.5]


def test_the_report_shows_the_calibration_and_renders_in_chromium(evaluated, tmp_path):
    workdir, _ = evaluated
    page = (workdir / "report.html").read_text()
    section = page[page.index("<h2>Judge calibration</h2>"):]
    section = section[:section.index("<h2>", 5)]
    cells = [c.split(">")[-1] for c in section.split("</td>")[:-1]]
    assert cells == ["4", "4", "0.000", "1.000", "1.000", "0.600"]
    assert 'src="report/calibration.png"' in section
    assert "| 4 | 4 | 0.000 | 1.000 | 1.000 | 0.600 |" in (workdir / "report.md").read_text()
    loaded, total = plots_loaded(chromium(), tmp_path, workdir / "report.html")
    assert loaded == total and total >= 2  # the CA histogram and the calibration heatmap


def test_rescoring_with_the_parties_reordered_asks_the_same_judge_again():
    def order_reader(index, body):
        text = body["messages"][-1]["content"]
        return Reply("5" if text.index("Cost Minimiser") < text.index("Quality Maximiser")
                     else "2")
    server = start_server(order_reader)
    try:
        judge = HttpJudge(server.url, "judge", max_retries=0)
        items = [(t.dilemma, t.personas, "a plan") for t in load_tasks("eval")[:3]]
        result = calibrate(items, [5.0, math.nan, 5.0], reordered(judge.ca_score), samples=8,
                           seed=0, method="reordered")
    finally:
        stop_server(server)
    # The failed item is never sampled; the others are asked once more, parties reversed.
    assert result["pairs"] == [[5.0, 2.0], [5.0, 2.0]] and len(server.requests) == 2
    assert result["exact"] == 0.0 and result["within_1"] == 0.0


def test_without_a_scored_solution_nothing_is_asked_and_the_report_says_so(tmp_path):
    def never(*args):
        raise AssertionError("no judge call expected")
    result = calibrate([("d", [], "s")], [math.nan], never, samples=4, seed=0, method="reordered")
    assert result["sampled"] == result["n"] == 0 and result["pairs"] == []
    page = open(write_run_report(str(tmp_path), {"calibration": result}), encoding="utf-8").read()
    assert "No item was scored twice." in page


def test_a_pair_with_a_failed_score_is_left_out_of_the_heatmap(tmp_path):
    result = {"method": "reordered", "description": "again", "sampled": 2, "n": 1,
              "pairs": [[math.nan, 2.0], [3.0, 3.0]], "exact": 1.0, "within_1": 1.0,
              "pearson_r": math.nan, "weighted_kappa": math.nan}
    page = open(write_run_report(str(tmp_path), {"calibration": result}), encoding="utf-8").read()
    assert 'src="report/calibration.png"' in page and (tmp_path / "report/calibration.png").exists()
    assert json.loads((tmp_path / "eval_results.json").read_text())["calibration"]["pairs"][0] \
        == [None, 2.0]

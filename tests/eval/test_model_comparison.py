"""The report's model comparison: one row per compared model, B's win rate A's mirrored."""
import numpy as np
import pytest

from negojax.eval.metrics import win_rate
from negojax.eval.report import comparison_table, write_report


def _results():
    # Both orders agree on 3 wins and 1 loss for A; the fifth pair's orders disagree (a tie).
    p_a_first = np.array([0.9, 0.8, 0.7, 0.2, 0.9])
    p_b_first = np.array([0.1, 0.3, 0.2, 0.9, 0.8])
    conflict = win_rate(p_a_first, p_b_first, n_resamples=200, seed=0)
    return {
        "models": {"A": "single-agent-trained (2150 steps): gs://b/sa/export", "B": "base: Qwen3"},
        "trained_by": {"A": {"setting": "single_agent", "steps": 2150, "model_path": "Qwen3",
                             "judge": "policy"}, "B": None},
        "win_rates": {"conflict": conflict},
        "conflict": {"greedy": {"mean_ca_score": 3.25, "mean_ca_score_ci": [3.0, 3.5]}},
        "conflict_baseline": {"greedy": {"mean_ca_score": 2.5}},
    }


def test_rows_are_the_compared_models_with_mirrored_win_rates():
    results = _results()
    w = results["win_rates"]["conflict"]
    assert (w["wins"], w["losses"], w["ties"]) == (3, 1, 1)
    header, rows = comparison_table(results, results["models"])
    assert header[3:] == ["CA win rate against the other, conflict (greedy) [95% CI]",
                          "mean CA score, conflict (greedy)"]
    lo, hi = w["win_rate_ci"]
    # the orders averaged: (0.9 + 0.9 + 0.8 + 0.7 + 0.7 + 0.8 + 0.2 + 0.1 + 0.9 + 0.2) / 10
    assert w["win_rate"] == pytest.approx(0.62)
    assert rows == [
        [results["models"]["A"], "single_agent", "2150", f"0.620 [{lo:.3f}, {hi:.3f}]",
         "3.250 [3.000, 3.500]"],
        ["base: Qwen3", "base", "0", f"0.380 [{1 - hi:.3f}, {1 - lo:.3f}]", "2.500"]]


def test_the_report_carries_the_comparison_first(tmp_path):
    results = _results()
    page = open(write_report(str(tmp_path), metrics_jsonl=None, eval_results=results),
                encoding="utf-8").read()
    assert page.index("<h2>Model comparison</h2>") < page.index("<h2>Conflict resolution</h2>")
    assert "single-agent-trained (2150 steps)" in page and "<td>base</td>" in page
    empty = open(write_report(str(tmp_path), metrics_jsonl=None,
                              eval_results={"models": results["models"]}),
                 encoding="utf-8").read()
    assert "No pairwise comparison in these results." in empty

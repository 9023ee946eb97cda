"""The single-agent baseline as users run it (real processes, the tiny config): two training
steps, then an evaluation of a negotiation-trained export against the single-agent one, labelled
by what trained each, with the paper-style comparison table in the report."""
import html
import json
import re

import pytest

from trainer_runs import metrics, one_line_error, run_main

SINGLE = "--config.rollout.setting=single_agent"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    single = tmp_path_factory.mktemp("single_agent")
    negotiation = tmp_path_factory.mktemp("negotiation")
    run_main("tiny_test", single, SINGLE)
    run_main("tiny_test", negotiation)
    return single, negotiation


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_single_agent_trains_two_steps_on_its_answers(trained):
    single, _ = trained
    rows = metrics(single)
    assert sorted(rows) == [1, 2]
    for row in rows.values():
        # tiny_test: 2 prompts x G 2, every answer judged once (no agreement calls), all scored.
        assert row["judge_calls"] == 4 and row["samples_dropped"] == 0
        assert row["agreement_rate"] == 1 and row["mean_rounds"] == 1
        assert row["grad_norm"] > 0 and row["skipped_updates"] == 0
    records = _lines(single / "transcripts.jsonl")
    assert [r["step"] for r in records] == [1] * 4 + [2] * 4
    for r in records:
        assert r["setting"] == "single_agent" and len(r["turns"]) == 1
        assert r["turns"][0]["text"] == r["final_solution"]
        assert r["reward"] == pytest.approx(r["reward_components"]["ca"])
    assert (single / "export" / "model.safetensors").is_file()
    assert json.loads((single / "export" / "training.json").read_text()) == {
        "setting": "single_agent", "env": "deliberation", "steps": 2, "model_path": "default",
        "judge": "policy"}
    page = (single / "transcripts.html").read_text()
    assert page.count("single-agent answer") == 8 and "<b>Final solution</b>" not in page


def test_eval_compares_a_negotiation_trained_export_with_the_single_agent_one(trained, tmp_path):
    single, negotiation = trained
    proc = run_main("tiny_test", tmp_path, "--config.mode=eval",  # greedy and sampled
                    f"--config.eval.trained_path={negotiation}/export",
                    f"--config.eval.baseline_path={single}/export",
                    "--config.eval.capability_prompts=1", "--config.eval.reasoning_problems=1")
    assert "eval_results" in proc.stdout
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["models"] == {
        "A": f"negotiation-trained (2 steps): {negotiation}/export",
        "B": f"single-agent-trained (2 steps): {single}/export"}
    assert [results["trained_by"][k]["setting"] for k in "AB"] == ["negotiation", "single_agent"]
    wins = results["win_rates"]
    assert list(wins) == ["conflict", "conflict_sampled", "open_ended"]
    assert wins["conflict"]["n"] == wins["conflict_sampled"]["n"] == 2

    page = (tmp_path / "report.html").read_text()
    section = page.split("<h2>Model comparison</h2>")[1].split("<h2>")[0]
    rows = [[html.unescape(re.sub("<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>.*?</td>", r)]
            for r in re.findall(r"<tr>(.*?)</tr>", section.split("<tbody>")[1])]
    assert [r[:3] for r in rows] == [[results["models"]["A"], "negotiation", "2"],
                                     [results["models"]["B"], "single_agent", "2"]]
    header = re.findall(r"<th>(.*?)</th>", section)
    assert header[3:6] == [f"CA win rate against the other, {name} [95% CI]" for name in
                           ("conflict (greedy)", "conflict (sampled)", "open-ended")]
    for column, name in ((3, "conflict"), (4, "conflict_sampled"), (5, "open_ended")):
        a, b = (float(r[column].split(" ")[0]) for r in rows)
        assert a == pytest.approx(wins[name]["win_rate"], abs=1e-3)
        assert a + b == pytest.approx(1, abs=2e-3)
    assert "## Model comparison" in (tmp_path / "report.md").read_text()


def test_an_unknown_setting_is_one_line_with_exit_2(tmp_path):
    proc = run_main("tiny_test", tmp_path, "--config.rollout.setting=solo", status=2)
    assert one_line_error(proc) == (
        "negojax: config.rollout.setting: 'solo' is not one of negotiation, single_agent; set "
        "--config.rollout.setting=<one of them>")


def test_a_negotiation_checkpoint_does_not_resume_as_single_agent(trained):
    _, negotiation = trained
    proc = run_main("tiny_test", negotiation, SINGLE, "--config.train.steps=3", status=2)
    assert "config.rollout.setting='negotiation' (now 'single_agent')" in one_line_error(proc)
    assert sorted(metrics(negotiation)) == [1, 2]


def test_a_damaged_training_json_is_one_line_with_exit_2(trained, tmp_path):
    single, _ = trained
    export = tmp_path / "export"
    export.mkdir()
    for f in (single / "export").iterdir():
        (export / f.name).write_bytes(f.read_bytes())
    (export / "training.json").write_text("{not json")
    proc = run_main("tiny_test", tmp_path / "eval", "--config.mode=eval",
                    f"--config.eval.baseline_path={export}", status=2)
    assert one_line_error(proc).startswith(
        f"negojax: config.eval.baseline_path: {export}/training.json is not valid JSON")


def test_a_self_judge_scores_with_the_live_policy(trained, tmp_path):
    """judge.path=self: step 1 judges with the initial weights, as the frozen "policy" judge
    does; from step 2 the judge is the updated policy, so the same answers' rewards differ."""
    single, _ = trained
    run_main("tiny_test", tmp_path, SINGLE, "--config.judge.path=self")
    live, frozen = _lines(tmp_path / "transcripts.jsonl"), _lines(single / "transcripts.jsonl")
    # The same answers at both steps (the same policy samples them), judged alike at step 1
    # and differently at step 2.
    assert [r["final_solution"] for r in live] == [r["final_solution"] for r in frozen]
    assert [r["reward"] for r in live[:4]] == pytest.approx([r["reward"] for r in frozen[:4]])
    assert [r["reward"] for r in live[4:]] != pytest.approx([r["reward"] for r in frozen[4:]])
    assert json.loads((tmp_path / "export" / "training.json").read_text())["judge"] == "self"

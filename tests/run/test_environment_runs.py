"""Environments as users run them (real processes): a custom environment named by import path
trains through the CLI, a user's task folder of 2-, 3- and 4-party tasks trains and evaluates,
resource_split's own config runs two steps and an evaluation, and bad input is one line."""
import json
import os

import numpy as np
import pytest

from negojax.run.config import ConfigError, validate_static
from shipped_configs import REPO, shipped_config
from trainer_runs import metrics, one_line_error, run_main

FIXTURES = os.path.join(REPO, "tests", "fixtures", "environments")
# configs/tiny_test.py's random model, for the configs that use the embedded one.
TINY = ("--config.model.random_init=True",
        '--config.model.overrides={"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, '
        '"num_heads": 4, "num_kv_heads": 2, "head_dim": 8}', "--config.rl.logprob_chunk=32")


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _persona(name, **optional):
    return {"name": name, "core_value": f"what {name} holds dear", **optional}


def _task(i, parties, split):
    personas = [_persona("Ana", wants="a quiet flat", fears="noise", style="calm")]
    personas += [_persona(n) for n in ("Ben", "Cleo", "Dev")[:parties - 1]]
    return {"id": f"{split}-{i}", "dilemma": f"Flatmates decide rule {i} of their shared flat.",
            "personas": personas, **({"tier": "house rules"} if i % 2 else {})}


def _write(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    _write(folder, "train.jsonl", [_task(i, 2 + i % 3, "train") for i in range(6)])
    _write(folder, "eval.jsonl", [_task(i, 2 + i % 3, "eval") for i in range(3)])
    return folder


def test_a_custom_environment_trains_two_steps_through_the_cli(tmp_path):
    run_main("tiny_test", tmp_path, "--config.env.name=film_night:FilmNight",
             extra_env={"PYTHONPATH": FIXTURES})
    rows = metrics(tmp_path)
    assert sorted(rows) == [1, 2]
    for row in rows.values():
        assert row["judge_calls"] == 0  # its own agreement rule and reward: no judge asked
        assert row["message_chars"] > 0 and row["grad_norm"] > 0
    records = _lines(tmp_path / "transcripts.jsonl")
    assert len(records) == 8
    for r in records:
        assert r["final_solution"] is None and "Two friends decide" in r["dilemma"]
        assert r["agreed"] and len(r["turns"]) == 2
        assert r["reward"] == pytest.approx(
            np.mean([max(0.0, 1 - len(t["text"]) / 300) for t in r["turns"]]))
        assert set(r["reward_components"]) == {"brevity"}
        assert r["outcome"]["message_chars"] == pytest.approx(
            np.mean([len(t["text"]) for t in r["turns"]]))
    info = json.loads((tmp_path / "export" / "training.json").read_text())
    assert info["env"] == "film_night:FilmNight"


def test_a_task_folder_of_two_to_four_parties_trains_and_evaluates(task_folder, tmp_path):
    run_main("tiny_test", tmp_path, f"--config.data.dir={task_folder}",
             "--config.rollout.prompts_per_step=3")
    records = _lines(tmp_path / "transcripts.jsonl")
    train_ids = {f"train-{i}" for i in range(6)}
    assert {r["scenario_id"] for r in records} <= train_ids
    assert {len(r["personas"]) for r in records} == {2, 3, 4}  # 3 prompts a step, 6 tasks: all
    proc = run_main("tiny_test", tmp_path, "--config.mode=eval", f"--config.data.dir={task_folder}",
                    "--config.eval.num_tasks=3", "--config.eval.decodings=('greedy',)",
                    "--config.eval.capability_prompts=1", "--config.eval.reasoning_problems=1")
    assert "eval_results" in proc.stdout
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["conflict"]["greedy"]["n"] == 3
    assert len(results["ca_scores"]["A"]) == 3


def test_bad_task_rows_and_folders_are_one_line(task_folder, tmp_path):
    bad = tmp_path / "bad"
    _write(bad, "train.jsonl", [_task(0, 2, "train"),
                                {"id": "x", "dilemma": "d", "personas": [_persona("Ana")]}])
    _write(bad, "eval.jsonl", [_task(0, 2, "eval")])
    line = one_line_error(run_main("tiny_test", tmp_path / "run", f"--config.data.dir={bad}",
                                   status=2))
    assert line.startswith("negojax: config.data.dir:") and "train.jsonl line 2" in line
    assert "personas" in line
    half = tmp_path / "half"
    _write(half, "train.jsonl", [_task(0, 2, "train")])
    config = shipped_config("tiny_test")
    config.data.dir = str(half)
    with pytest.raises(ConfigError, match="^config.data.dir: .*eval.jsonl"):
        validate_static(config)


@pytest.mark.parametrize("values, key", [
    ({"env.name": "nowhere_at_all:Env"}, "config.env.name"),
    ({"env.name": "bogus"}, "config.env.name"),
    ({"env.name": "negojax.data:Task"}, "config.env.name"),  # not an Environment
    ({"env.name": "resource_split", "env.parties": (5,)}, "config.env.parties"),
    ({"env.name": "resource_split", "env.welfare": "max"}, "config.env.welfare"),
    ({"env.name": "resource_split", "rollout.setting": "single_agent"}, "config.rollout.setting"),
    ({"env.name": "resource_split", "data.dir": "/tmp"}, "config.data.dir"),
    ({"data.dir": "/nonexistent-tasks"}, "config.data.dir"),
])
def test_bad_environment_settings_are_one_line(values, key):
    config = shipped_config("tiny_test")
    for dotted, value in values.items():
        section, name = dotted.split(".")
        config[section][name] = value
    with pytest.raises(ConfigError, match=f"^{key}") as error:
        validate_static(config)
    assert "\n" not in str(error.value)


def test_resource_split_config_runs_two_steps_and_evaluates(tmp_path):
    """CI's smoke of configs/resource_split.py: its settings with a tiny random model, over games
of 2 to 4 parties."""
    small = ("--config.train.steps=2", "--config.rollout.prompts_per_step=3",
             "--config.rollout.max_new_tokens=8", "--config.train.checkpoint_every=1",
             "--config.env.parties=(2, 3, 4)", *TINY)
    run_main("resource_split", tmp_path, *small, "--config.rl.credit=turn")
    rows = metrics(tmp_path)
    assert sorted(rows) == [1, 2]
    records = _lines(tmp_path / "transcripts.jsonl")
    for step, row in rows.items():
        assert row["judge_calls"] == 0
        assert 0 <= row["welfare"] <= row["agreement"] <= 1
        assert row["unparsable_rate"] == 1.0  # random weights write no proposal
        counts = {len(r["personas"]) for r in records if r["step"] == step}
        assert {k for k in row if k.startswith("agreement_rate_")} == \
            {f"agreement_rate_{n}p" for n in counts}  # one per party count the step drew
    assert all(r["tier"] == f"{len(r['personas'])}-party" for r in records)
    assert {len(r["personas"]) for r in records} <= {2, 3, 4}
    assert all(set(r["reward_components"]) == {"welfare"} for r in records)
    run_main("resource_split", tmp_path, "--config.mode=eval", "--config.eval.num_tasks=4",
             "--config.eval.opponents=('base',)", *small)
    results = json.loads((tmp_path / "eval_results.json").read_text())
    outcomes = results["environment"]["outcomes"]
    assert results["environment"]["name"] == "resource_split"
    for name in ("A", "B"):
        greedy = outcomes[name]["greedy"]
        assert greedy["n"] == 4 and greedy["agreement"] == 0.0
        assert "utility_seat3" in greedy  # the eval games take 2, 3, 4 and 2 parties
        assert greedy["welfare_ci"] == [0.0, 0.0]
    by_parties = results["environment"]["by_parties"]["A"]["greedy"]
    assert {n: m["n"] for n, m in by_parties.items()} == {"2": 2, "3": 1, "4": 1}
    difference = outcomes["A-B"]["greedy"]  # the trained export against the base, task by task
    assert difference["n"] == 4 and difference["welfare"] == 0.0
    page = (tmp_path / "report.html").read_text()
    assert "Environment outcomes: resource_split" in page and "paired over the same tasks" in page
    assert "By party count" in page
    assert "conflict" not in results
    # The reference policies beside the models, over the same 4 games, with intervals; a rate
    # that is 1 everywhere has width (Wilson's), a measure that is, none.
    references = results["environment"]["references"]
    assert {"take_all_seat0", "even_split", "uniform_random", "best_offer_seat0",
            "nash_optimal", "sum_optimal"} <= set(references)
    take_all = references["take_all_seat0"]
    assert take_all["n"] == 4 and take_all["agreement"] == 1.0 and take_all["one_sided"] == 1.0
    assert take_all["agreement_ci"][0] < 1.0 and take_all["utility_seat0_ci"] == [1.0, 1.0]
    assert references["nash_optimal"]["welfare_nash"] == pytest.approx(1.0)
    assert "reference: even_split" in page
    # Each model in seat 0 against the base model in the others, and their paired difference.
    against = results["environment"]["against"]["base"]
    assert set(against) == {"A", "B", "A-B"} and against["A"]["greedy"]["n"] == 4
    assert "against base" in page


def test_resource_split_pays_each_seat_its_own_under_mixed_rewards(tmp_path):
    """reward.mode=mixed with seat credit trains a step; every transcript carries what each seat
    was paid (lambda * welfare + (1 - lambda) * the seat's own points: 0 without a deal, which a
    random tiny model never strikes), and the step reports each trained seat's mean."""
    run_main("resource_split", tmp_path, "--config.train.steps=1",
             "--config.rollout.prompts_per_step=2", "--config.rollout.max_new_tokens=8",
             "--config.reward.mode=mixed", "--config.reward.prosocial=0.25",
             "--config.rl.credit=seat", *TINY)
    records = _lines(tmp_path / "transcripts.jsonl")
    assert all(len(r["seat_rewards"]) == 2 for r in records)
    assert all(r["seat_rewards"] == [0.0, 0.0] for r in records if r["reward"] == 0.0)
    row = metrics(tmp_path)[1]
    assert row["reward_seat0"] == row["reward_seat1"] == 0.0

"""Every extension point takes a new entry from a module of the user's own, named by import
path on the command line, and a run trains a step with all of them (tests/fixtures/extensions;
an environment from a test module trains in test_environment_runs.py, film_night:FilmNight)."""
import json
import os

from shipped_configs import REPO
from trainer_runs import metrics, run_main

EXTENSIONS = os.path.join(REPO, "tests", "fixtures", "extensions")


def test_a_user_module_extends_every_registry_and_trains_a_step_with_them(tmp_path):
    path = os.pathsep.join([EXTENSIONS, os.environ.get("PYTHONPATH", "")])
    run_main("tiny_test", tmp_path, "--config.train.steps=1",
             "--config.rollout.scheduler=negojax_extensions:responder_opens",
             "--config.rl.advantage=negojax_extensions:ones",
             "--config.rl.credit=negojax_extensions:HALVED",
             "--config.rl.loss_aggregation=negojax_extensions:zero_loss",
             "--config.judge.kind=negojax_extensions:agreeable", extra_env={"PYTHONPATH": path})
    with open(tmp_path / "transcripts.jsonl", encoding="utf-8") as f:
        dialogues = [json.loads(line) for line in f]
    assert {d["turns"][0]["speaker"] for d in dialogues} == {1}  # the scheduler's: seat 1 opens
    trained = [t for d in dialogues for t in d["turns"] if t["speaker"] == 0]
    assert {t["advantage"] for t in trained} == {0.5}  # the estimator's ones, the credit's half
    row = metrics(tmp_path)[1]
    assert row["agreement_rate"] == 1.0 and row["reward_mean"] == 3.0  # the judge's
    assert row["grad_norm"] == 0.0 and row["loss"] == 0.0  # the aggregation's

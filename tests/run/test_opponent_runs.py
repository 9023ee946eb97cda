"""Opponents as users run them (real processes, the tiny config). A league run cut back to its
checkpoint of step 2, as a crash after it would leave it, and resumed draws the same members and
ends with the same league as the uninterrupted run, since its checkpoints carry the members and
their statistics. An OpenAI-compatible endpoint plays the opponent seats of a training run."""
import json
import shutil

from openai_server import Reply, start_server, stop_server
from trainer_runs import assert_same_steps, metrics, run_main

LEAGUE = ("--config.rollout.opponent=league", "--config.rollout.opponent_pool_size=3",
          "--config.train.steps=4")


def _league(workdir, step: int) -> dict:
    with open(workdir / "checkpoints" / str(step) / "meta" / "metadata", encoding="utf-8") as f:
        meta = json.load(f)
    return {"members": meta["num_opponents"], **meta["opponents"]}


def test_a_resumed_league_run_equals_an_uninterrupted_one(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    run_main("tiny_test", whole, *LEAGUE)
    shutil.copytree(whole, part)
    for step in (3, 4):  # tiny_test keeps the last three checkpoints: 2, 3 and 4
        shutil.rmtree(part / "checkpoints" / str(step))
    resumed = run_main("tiny_test", part, *LEAGUE)
    assert "resuming from checkpoint step 2" in resumed.stdout
    a, b = metrics(whole), metrics(part)
    assert sorted(b) == [1, 2, 3, 4]
    assert all(a[s]["time_rollout_s"] != b[s]["time_rollout_s"] for s in (3, 4))  # redone
    assert_same_steps(a, b, range(1, 5))
    assert [a[s]["league_size"] for s in a] == [1, 2, 3, 3]  # one joins per step, three kept
    assert [a[s]["opponent_index"] for s in a] == [b[s]["opponent_index"] for s in b]
    league = _league(whole, 4)
    assert league == _league(part, 4)
    assert league["members"] == 3 and league["rewards"][a[4]["opponent_index"]] is not None


def test_an_endpoint_plays_the_opponent_seats_of_a_training_run(tmp_path):
    server = start_server(lambda index, body: Reply(f"Endpoint offer {index}."))
    try:
        run_main("tiny_test", tmp_path, "--config.train.steps=1",
                 "--config.rollout.opponent=model", "--config.rollout.opponent_model.kind=http",
                 "--config.rollout.opponent_model.model=m",
                 f"--config.rollout.opponent_model.base_url={server.url}")
    finally:
        stop_server(server)
    with open(tmp_path / "transcripts.jsonl", encoding="utf-8") as f:
        dialogues = [json.loads(line) for line in f]
    opponent_turns = [t for d in dialogues for t in d["turns"] if t["speaker"] == 1]
    assert opponent_turns and len(opponent_turns) == len(server.requests)
    assert all(t["num_tokens"] == 0 and t["text"].startswith("Endpoint offer ")
               for t in opponent_turns)
    assert all(t["num_tokens"] > 0 for d in dialogues for t in d["turns"] if t["speaker"] == 0)
    assert "opponent_index" not in metrics(tmp_path)[1]

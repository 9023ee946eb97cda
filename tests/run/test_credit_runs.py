"""Seats, credit and dynamic sampling through the CLI: the policy rotates through the seats of a
group, its turns carry the role-conditioned advantages the transcript's own rewards give, and
groups without signal leave the update while oversampled prompts fill it."""
import json
import math

from trainer_runs import metrics, run_main


def _records(workdir):
    return [json.loads(line) for line in (workdir / "transcripts.jsonl").read_text().splitlines()]


def _grpo(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / (std + 1e-6) for v in values]


def test_rotating_seats_with_seat_credit_and_dynamic_sampling(tmp_path):
    run_main("tiny_test", tmp_path, "--config.train.steps=1", "--config.rollout.group_size=4",
             "--config.rollout.policy_seats=rotate", "--config.rl.credit=seat",
             "--config.rl.skip_zero_advantage_groups=True", "--config.rl.oversample_prompts=2",
             "--config.env.name=deliberation")
    row = metrics(tmp_path)[1]
    assert row["groups_sampled"] == 4  # prompts_per_step 2 + 2 oversampled
    with_signal = row["groups_sampled"] - row["groups_without_signal"]
    assert row["groups_trained"] == min(2, with_signal)
    records = _records(tmp_path)
    assert len(records) == 16
    seats_seen = set()
    for r in records:
        seats = len(r["personas"])
        assert r["policy_seats"] == [r["group_index"] % seats]  # rotate
        seats_seen.add(r["policy_seats"][0])
        for turn in r["turns"]:  # only the policy's own turns carry credit
            assert ("advantage" in turn) == (turn["speaker"] in r["policy_seats"])
    assert {"reward_seat0", "reward_seat1"} <= set(row) and seats_seen >= {0, 1}
    # seat credit: each dialogue against the dialogues of its group where the policy held
    # the same seat (GRPO over the transcript's own rewards)
    for prompt in {r["prompt_index"] for r in records}:
        group = [r for r in records if r["prompt_index"] == prompt]
        for seat in {r["policy_seats"][0] for r in group}:
            same = [r for r in group if r["policy_seats"][0] == seat and r["reward"] is not None]
            for r, want in zip(same, _grpo([r["reward"] for r in same])):
                for turn in r["turns"]:
                    if "advantage" in turn:
                        # float32 in the trainer: rewards a few 1e-4 apart give advantages to ~1e-3
                        assert math.isclose(turn["advantage"], want, rel_tol=1e-3, abs_tol=1e-3)


def test_a_step_whose_groups_all_lack_signal_makes_no_update(tmp_path):
    """Marker agreement that the random model never writes: every reward is 0, every group
    flat. With dynamic sampling the step trains nothing (no optimizer step, its update metrics
    null) and the run still finishes and exports."""
    run_main("tiny_test", tmp_path, "--config.train.steps=1", "--config.rollout.agreement=marker",
             "--config.rl.skip_zero_advantage_groups=True")
    row = metrics(tmp_path)[1]
    assert (row["groups_sampled"], row["groups_without_signal"], row["groups_trained"]) == (2, 2, 0)
    assert row["loss"] is None and row["lr"] is None and row["skipped_updates"] == 0
    assert (tmp_path / "export").is_dir()

"""`judge.ensemble`, `judge.ensemble_vote` and the calibration keys: a bad entry is one line
naming the key, before any model loads; an unreachable member is named by its index; a training
run on two real HTTP judges (127.0.0.1), one of which fails every CA score, trains on the other's
scores and counts the failures."""
import pytest

from negojax.run.config import ConfigError, judge_entries, validate_static
from openai_server import Reply, answer_in_kind, start_server, stop_server
from shipped_configs import shipped_config
from trainer_runs import PROXY_VARS, metrics, one_line_error, run_main

HTTP = {"kind": "http", "base_url": "http://127.0.0.1:9/v1", "model": "judge"}


def configured(**keys):
    config = shipped_config("tiny_test")
    for key, value in keys.items():
        section, name = key.split("__")
        config[section][name] = value
    return config


def test_members_take_the_judge_blocks_fields_they_do_not_set():
    config = configured(judge__ensemble=(HTTP, {"kind": "local"}), judge__timeout_s=7.0)
    (first_key, first), (second_key, second) = judge_entries(config)
    assert (first_key, second_key) == ("judge.ensemble[0]", "judge.ensemble[1]")
    assert first["base_url"] == HTTP["base_url"] and first["timeout_s"] == 7.0
    assert second["kind"] == "local" and second["path"] == "policy"
    assert judge_entries(configured()) == [("judge", judge_entries(configured())[0][1])]


@pytest.mark.parametrize("keys, expected", [
    ({"judge__ensemble": (HTTP,)}, "config.judge.ensemble: has one member"),
    ({"judge__ensemble": (HTTP, "local")}, "config.judge.ensemble[1]: 'local' is not a dict"),
    ({"judge__ensemble": (HTTP, {"kind": "local", "url": "x"})},
     "config.judge.ensemble[1].url: is not a judge field"),
    ({"judge__ensemble": ({**HTTP, "model": ""}, HTTP)},
     "config.judge.ensemble[0].model: is empty"),
    ({"judge__ensemble": (HTTP, {**HTTP, "base_url": "ftp://x"})},
     "config.judge.ensemble[1].base_url: 'ftp://x' is not an http(s) URL"),
    ({"judge__ensemble": (HTTP, {**HTTP, "concurrency": 0})},
     "config.judge.ensemble[1].concurrency: 0 must be > 0"),
    ({"judge__ensemble": (HTTP, {"kind": "remote"})},
     "config.judge.ensemble[1].kind: 'remote' is not one of local, http"),
    ({"judge__ensemble_vote": "median"}, "config.judge.ensemble_vote: 'median' is not one of"),
    ({"eval__calibration_judge": "second_member"},
     "config.eval.calibration_judge: is second_member but judge.ensemble has fewer than 2"),
    ({"eval__calibration_judge": "seed"}, "config.eval.calibration_judge: 'seed' is not one of"),
    ({"eval__calibration_samples": -1}, "config.eval.calibration_samples: -1 must be >= 0"),
])
def test_bad_ensemble_and_calibration_keys_are_one_line(keys, expected):
    with pytest.raises(ConfigError) as error:
        validate_static(configured(**keys))
    assert str(error.value).count("\n") == 0 and expected in str(error.value)


def test_an_unreachable_member_stops_the_run_before_it_starts(tmp_path):
    ensemble = ({"kind": "local"}, HTTP)
    line = one_line_error(run_main("tiny_test", tmp_path, "--config.mode=eval",
                                   f"--config.judge.ensemble={ensemble!r}", status=2))
    assert line.startswith("negojax: config.judge.ensemble[1].base_url: judge endpoint "
                           "http://127.0.0.1:9/v1 is unreachable")


def test_training_on_an_ensemble_scores_with_the_members_that_answered(tmp_path, monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)

    def no_scores(index, body):
        reply = answer_in_kind(index, body)
        return reply if reply.content == "yes" else Reply(status=503)
    servers = [start_server(answer_in_kind), start_server(no_scores)]
    ensemble = tuple({"kind": "http", "base_url": s.url, "model": "judge", "max_retries": 0}
                     for s in servers)
    try:
        run_main("tiny_test", tmp_path, "--config.train.steps=1", "--config.reward.fallback=drop",
                 "--config.judge.max_failure_rate=1.0", f"--config.judge.ensemble={ensemble!r}")
    finally:
        for server in servers:
            stop_server(server)
    row = metrics(tmp_path)[1]
    # 4 dialogues: the second member fails each CA score, the first scores every one 4.
    assert row["judge_failures_http_503"] == row["judge_failures"] == 4
    assert row["samples_dropped"] == 0 and row["reward_mean"] == 4.0
    assert row["judge_calls"] == 2 * len(servers[0].requests)

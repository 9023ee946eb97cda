"""Judge failures are data, not zeros: a real HTTP judge on 127.0.0.1 that fails every request,
one that dies mid-run, and one that fails only the CA scores under reward.fallback=drop."""
import json
import os
import time

import pytest

from openai_server import Reply, answer_in_kind, start_server, stop_server
from trainer_runs import metrics, run_main, start_main


@pytest.fixture
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def http_judge(server, *extra):
    return ("--config.judge.kind=http", f"--config.judge.base_url={server.url}",
            "--config.judge.model=judge", "--config.judge.max_retries=0",
            "--config.judge.cache=False", *extra)


def test_a_judge_that_always_fails_stops_the_run_before_training(tmp_path, no_proxy):
    server = start_server(lambda index, body: Reply(status=500))
    try:
        proc = run_main("tiny_test", tmp_path, *http_judge(server), status=3)
    finally:
        stop_server(server)
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert last.startswith("negojax: stopped at step 1: the judge failed ") and "(http_500 " in last
    assert "above judge.max_failure_rate=0.2" in last, last
    assert not metrics_file_rows(tmp_path) and not (tmp_path / "export").exists()


def metrics_file_rows(workdir):
    path = workdir / "metrics.jsonl"
    return metrics(workdir) if path.exists() else {}


def test_a_judge_that_dies_mid_run_stops_at_that_step(tmp_path, no_proxy):
    server = start_server(answer_in_kind)
    proc = start_main("tiny_test", tmp_path, "--config.train.steps=4", *http_judge(server))
    deadline = time.time() + 300
    try:
        while not metrics_file_rows(tmp_path):
            assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
            time.sleep(0.1)
    finally:
        stop_server(server)  # from now on every connection is refused
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 3, out[-3000:]
    assert "the judge failed" in out and "(connection " in out, out[-3000:]
    rows = metrics(tmp_path)
    stopped = max(rows) + 1
    assert rows[1]["judge_calls"] > 0 and rows[1]["judge_failures"] == 0
    assert f"stopped at step {stopped}" in out
    assert str(max(rows)) in os.listdir(tmp_path / "checkpoints")  # resumable where it stopped


def test_failed_scores_are_missing_and_drop_counts_only_scored_samples(tmp_path, no_proxy):
    def only_agreement(index, body):
        reply = answer_in_kind(index, body)
        return reply if reply.content == "yes" else Reply(status=503)
    server = start_server(only_agreement)
    try:
        run_main("tiny_test", tmp_path, "--config.train.steps=1", "--config.reward.fallback=drop",
                 *http_judge(server, "--config.judge.max_failure_rate=1.0"))
    finally:
        stop_server(server)
    row = metrics(tmp_path)[1]
    assert row["judge_failures_http_503"] == row["samples_dropped"] == 4  # every CA score
    assert row["judge_failures"] == 4 and row["judge_calls"] > 4
    assert row["reward_mean"] is None  # no sample was scored: no made-up mean
    with open(tmp_path / "transcripts.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert all(r["ca_failure"] == "http_503" and r["reward_components"]["ca"] is None
               and r["reward"] is None for r in records)
    report = (tmp_path / "report.md").read_text()
    assert "| judge_failures | 4 | 4 |" in report and "| samples_dropped | 4 | 4 |" in report


def ca_reply(content: str):
    """A judge that agrees, and answers every CA score with `content`."""
    def behaviour(index, body):
        reply = answer_in_kind(index, body)
        return reply if reply.content == "yes" else Reply(content)
    return behaviour


def test_a_signed_score_is_a_counted_failure_not_a_score(tmp_path, no_proxy):
    """"-3" held the digit 3 and was read as a CA score of 3, with no failure counted."""
    server = start_server(ca_reply("-3"))
    try:
        run_main("tiny_test", tmp_path, "--config.train.steps=1", "--config.reward.fallback=drop",
                 *http_judge(server, "--config.judge.max_failure_rate=1.0"))
    finally:
        stop_server(server)
    row = metrics(tmp_path)[1]
    assert row["judge_failures_unreadable"] == row["samples_dropped"] == 4  # every CA score
    assert row["reward_mean"] is None


def test_a_fixed_judge_is_asked_again_rather_than_its_cached_failures(tmp_path, no_proxy):
    """A judge that answered without a number stops the run (3); once it is fixed, the rerun on
    the same workdir, with the judge's cache on, sends requests and trains: failed replies were
    cached and replayed, so the rerun stopped again after sending nothing."""
    server = start_server(ca_reply("I cannot score this."))
    flags = [flag for flag in http_judge(server) if flag != "--config.judge.cache=False"]
    try:
        stopped = run_main("tiny_test", tmp_path, "--config.train.steps=1", *flags, status=3)
        assert "(unreadable " in stopped.stderr.strip().splitlines()[-1]
        server.behaviour = answer_in_kind  # the judge is fixed
        before = len(server.requests)
        run_main("tiny_test", tmp_path, "--config.train.steps=1", *flags)
        assert len(server.requests) > before
    finally:
        stop_server(server)
    assert metrics(tmp_path)[1]["judge_failures"] == 0

"""HttpJudge against a real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions schema
and injects faults on demand. Nothing here reaches beyond 127.0.0.1."""
import logging
import math
import socket

import numpy as np
import pytest

from negojax.rewards import CA_SCORE, HttpJudge, JudgeUnreachable
from openai_server import Handler, Reply, completion, start_server, stop_server
from negojax.rewards.http_judge import ChatEndpoint, normalize_base_url

PERSONAS = [{"name": "Ada", "core_value": "thrift", "wants": "low cost", "fears": "waste",
             "style": "blunt"},
            {"name": "Ben", "core_value": "quality", "wants": "durable work", "fears": "failure",
             "style": "careful"}]


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    srv = start_server()
    yield srv
    stop_server(srv)


def make_judge(server, **overrides):
    # A roomy timeout: on a loaded 2-core machine a 0.5 s one added a timed-out attempt to the
    # request counts the tests assert; the timeout tests pass their own.
    options = dict(timeout_s=10.0, max_retries=2, concurrency=4, backoff_base_s=0.01)
    options.update(overrides)
    return HttpJudge(server.url, "judge-model", **options)


def score(judge, solutions):
    return judge.ca_score(["A dilemma."] * len(solutions), [PERSONAS] * len(solutions), solutions)


def last_user_text(body):
    return body["messages"][-1]["content"]


def test_each_question_reads_its_answer_over_the_openai_schema(server):
    def behaviour(index, body):
        text = last_user_text(body)
        return Reply("Yes." if "yes or no" in text else "B" if "A or B" in text else "Score: 4")
    server.behaviour = behaviour
    judge = HttpJudge(server.url.removesuffix("/v1"), "judge-model", timeout_s=1)  # /v1 appended
    turns = [[("Ada", "Let us split it."), ("Ben", "Agreed, split it.")]]
    assert judge.agreement(["d"], [PERSONAS], turns).tolist() == [1.0]
    assert score(judge, ["a plan"]).tolist() == [4.0]
    assert judge.prefer(["q"], ["a"], ["b"]).tolist() == [0.0]
    assert server.paths == ["/v1/chat/completions"] * 3
    assert all(body["model"] == "judge-model" and body["messages"][0]["role"] == "system"
               for body in server.requests)
    assert judge.failures == 0


def test_slow_reply_past_the_timeout_is_retried(server):
    server.behaviour = lambda index, body: Reply("3", delay_s=0.9 if index == 0 else 0.0)
    judge = make_judge(server, timeout_s=0.3)
    assert score(judge, ["plan"]).tolist() == [3.0]
    assert len(server.requests) == 2 and judge.failures == 0


def test_a_server_that_is_always_too_slow_gives_nan(server, caplog):
    server.behaviour = lambda index, body: Reply("3", delay_s=0.6)
    judge = make_judge(server, timeout_s=0.2, max_retries=1)
    with caplog.at_level(logging.WARNING, logger="negojax.rewards.http_judge"):
        assert math.isnan(score(judge, ["plan"])[0])
    assert len(server.requests) == 2 and judge.failures == 1
    assert "timed out; 2 attempt(s)" in caplog.text


def test_server_errors_are_retried(server):
    server.behaviour = lambda index, body: Reply("5", status=500 if index < 2 else 200)
    judge = make_judge(server)
    assert score(judge, ["plan"]).tolist() == [5.0]
    assert len(server.requests) == 3


def test_429_waits_for_retry_after(server):
    server.behaviour = lambda index, body: (Reply(status=429, headers={"Retry-After": "1"})
                                            if index == 0 else Reply("2"))
    judge = make_judge(server, backoff_base_s=0.001)
    assert score(judge, ["plan"]).tolist() == [2.0]
    assert server.times[1] - server.times[0] >= 0.95


@pytest.mark.parametrize("reply", [
    Reply(raw=b'{"choices": [{"message": {"content": "4"'),                  # JSON cut short
    Reply(raw=completion("4")[:30], declared_length=len(completion("4"))),  # connection cut short
    Reply(raw=b'{"choices": []}'),                                          # wrong schema
])
def test_truncated_or_malformed_json_is_retried(server, reply):
    server.behaviour = lambda index, body: reply if index == 0 else Reply("1")
    judge = make_judge(server)
    assert score(judge, ["plan"]).tolist() == [1.0]
    assert len(server.requests) == 2 and judge.failures == 0


def test_garbage_text_gets_one_stricter_reask(server):
    server.behaviour = lambda index, body: Reply(
        "2" if last_user_text(body) == CA_SCORE.reask else "Quite good overall, I would say.")
    judge = make_judge(server)
    assert score(judge, ["plan"]).tolist() == [2.0]
    assert len(server.requests) == 2
    reask = server.requests[1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": "Quite good overall, I would say."}


def test_garbage_after_the_reask_is_a_counted_failure(server, caplog):
    server.behaviour = lambda index, body: Reply("no idea")
    judge = make_judge(server)
    with caplog.at_level(logging.WARNING):
        result = score(judge, ["plan"])
    assert math.isnan(result[0]) and judge.failures == 1 and len(server.requests) == 2
    assert "unreadable reply" in caplog.text


def test_exhausted_retries_give_nan_and_a_counted_warning_without_raising(server, caplog):
    server.behaviour = lambda index, body: Reply(
        "4", status=500 if "doomed" in last_user_text(body) else 200)
    judge = make_judge(server, max_retries=2)
    with caplog.at_level(logging.WARNING, logger="negojax.rewards.http_judge"):
        result = score(judge, ["good plan", "doomed plan", "other plan"])
    assert result[0] == 4.0 and math.isnan(result[1]) and result[2] == 4.0
    assert judge.failures == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0].getMessage()
    assert sum("doomed" in last_user_text(body) for body in server.requests) == 3  # 1 + 2 retries


def test_client_errors_are_not_retried(server):
    server.behaviour = lambda index, body: Reply(status=400)
    judge = make_judge(server)
    assert math.isnan(score(judge, ["plan"])[0])
    assert len(server.requests) == 1 and judge.failures == 1


def test_unreachable_server_gives_nan_not_an_exception():
    judge = HttpJudge(f"http://127.0.0.1:{free_port()}/v1", "m", timeout_s=0.3, max_retries=1,
                      backoff_base_s=0.01)
    assert np.isnan(score(judge, ["a", "b"])).all() and judge.failures == 2


def test_cache_hit_makes_no_second_request(server, tmp_path):
    server.behaviour = lambda index, body: Reply("3")
    first = make_judge(server, cache_dir=tmp_path)
    assert score(first, ["plan", "other"]).tolist() == [3.0, 3.0]
    assert len(server.requests) == 2
    second = make_judge(server, cache_dir=tmp_path)  # a fresh judge reads the same cache
    assert score(second, ["plan", "other"]).tolist() == [3.0, 3.0]
    assert len(server.requests) == 2 and second.cache_hits == 2 and second.requests_sent == 0
    assert score(second, ["new plan"]).tolist() == [3.0] and len(server.requests) == 3


def test_concurrency_limit_is_respected(server):
    server.behaviour = lambda index, body: Reply("4", delay_s=0.05)
    judge = make_judge(server, concurrency=3)
    assert score(judge, [f"plan {i}" for i in range(12)]).tolist() == [4.0] * 12
    assert server.max_in_flight == 3


def test_api_key_is_sent_but_never_logged_or_cached(server, tmp_path, caplog, monkeypatch):
    secret = "sk-test-4f1c9a77e2b3"
    monkeypatch.setenv("NEGOJAX_TEST_JUDGE_KEY", secret)
    server.behaviour = lambda index, body: (
        Reply(status=500) if "doomed" in last_user_text(body) else
        Reply("?") if "odd" in last_user_text(body) else Reply("4"))
    judge = make_judge(server, api_key_env="NEGOJAX_TEST_JUDGE_KEY", cache_dir=tmp_path)
    with caplog.at_level(logging.DEBUG):
        score(judge, ["good plan", "doomed plan", "odd plan"])
        judge.check_reachable()
    assert set(server.auth) == {f"Bearer {secret}"}
    assert caplog.records, "expected warnings for the failed samples"
    for record in caplog.records:
        assert secret not in record.getMessage() and secret not in str(record.args)
    cache_files = list(tmp_path.rglob("*"))
    assert any(path.suffix == ".json" for path in cache_files)
    assert all(secret.encode() not in path.read_bytes() for path in cache_files if path.is_file())
    assert secret not in repr(judge)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_check_reachable(server):
    make_judge(server).check_reachable()
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(JudgeUnreachable) as error:
        HttpJudge(url, "m", timeout_s=0.3).check_reachable()
    message = str(error.value)
    assert url in message and "\n" not in message


def test_check_reachable_names_the_key_variable_on_401(server, monkeypatch):
    monkeypatch.setattr(Handler, "do_GET", lambda self: self._send(401, {}, b"{}"))
    with pytest.raises(JudgeUnreachable, match="MY_JUDGE_KEY"):
        make_judge(server, api_key_env="MY_JUDGE_KEY").check_reachable()


def test_check_reachable_accepts_a_server_without_a_models_route(server, monkeypatch):
    monkeypatch.setattr(Handler, "do_GET", lambda self: self._send(404, {}, b"{}"))
    make_judge(server).check_reachable()


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    judge = HttpJudge("http://127.0.0.1:1/v1", "m", backoff_base_s=1.0, backoff_max_s=5.0)
    for attempt, low, high in [(0, 0.5, 1.0), (2, 2.0, 4.0), (6, 2.5, 5.0)]:
        delays = [judge._delay(attempt, None) for _ in range(50)]
        assert low <= min(delays) and max(delays) <= high and len(set(delays)) > 1
    assert judge._delay(0, 3.0) == 3.0 and judge._delay(0, 100.0) == 5.0


@pytest.mark.parametrize("given, expected", [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
    ("https://example.test/v1beta/openai/", "https://example.test/v1beta/openai"),
])
def test_base_url_is_the_part_before_chat_completions(given, expected):
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["127.0.0.1:8000", "http://127.0.0.1:8000/v1/chat/completions"])
def test_bad_base_url_is_a_one_line_error(bad):
    with pytest.raises(ValueError, match="base_url"):
        normalize_base_url(bad)


def test_a_failed_sample_is_not_cached_so_a_fixed_server_is_asked_again(server, tmp_path):
    server.behaviour = lambda index, body: Reply("no idea")
    broken = make_judge(server, cache_dir=tmp_path)
    assert math.isnan(score(broken, ["plan"])[0]) and broken.failures == 1
    assert not any(path.is_file() for path in tmp_path.rglob("*"))
    server.behaviour = lambda index, body: Reply("4")
    fixed = make_judge(server, cache_dir=tmp_path)  # the rerun, over the same cache
    assert score(fixed, ["plan"]).tolist() == [4.0]
    assert fixed.requests_sent == 1 and fixed.cache_hits == 0 and fixed.failures == 0


def test_a_cached_reply_its_caller_rejects_is_asked_again(server, tmp_path):
    server.behaviour = lambda index, body: Reply("no idea" if index == 0 else "4")
    endpoint = ChatEndpoint(server.url, "m", cache_dir=tmp_path)
    messages = [{"role": "user", "content": "Score it."}]
    assert endpoint.complete(messages) == "no idea"  # any reply is accepted, so cached
    assert endpoint.complete(messages, accept=str.isdigit) == "4"
    assert endpoint.cache_hits == 0 and len(server.requests) == 2
    assert endpoint.complete(messages, accept=str.isdigit) == "4"
    assert endpoint.cache_hits == 1 and len(server.requests) == 2


def test_two_endpoints_of_one_model_do_not_share_cache_entries(server, tmp_path):
    server.behaviour = lambda index, body: Reply("2")
    other = start_server(lambda index, body: Reply("5"))
    try:
        assert score(make_judge(server, cache_dir=tmp_path), ["plan"]).tolist() == [2.0]
        second = make_judge(other, cache_dir=tmp_path)
        assert score(second, ["plan"]).tolist() == [5.0]
        assert second.cache_hits == 0 and len(other.requests) == 1
    finally:
        stop_server(other)


def test_a_negative_score_is_a_counted_unreadable_failure(server):
    server.behaviour = lambda index, body: Reply("-3")
    judge = make_judge(server)
    assert math.isnan(score(judge, ["plan"])[0])
    assert judge.failures == 1 and judge.last_failures == ["unreadable"]
    assert len(server.requests) == 2  # the reply and its one re-ask


def test_a_reply_over_max_reply_bytes_is_a_counted_failure_never_cached(server, tmp_path,
                                                                       caplog):
    server.behaviour = lambda index, body: Reply("4" * 10_000_000)
    judge = make_judge(server, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="negojax.rewards.http_judge"):
        assert math.isnan(score(judge, ["plan"])[0])
    assert judge.failures == 1 and judge.last_failures == ["unreadable"]
    assert len(server.requests) == 1  # the same request would get the same flood
    assert "reply over 1000000 bytes; raise the judge's max_reply_bytes" in caplog.text
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_a_reply_of_exactly_max_reply_bytes_is_read(server):
    server.behaviour = lambda index, body: Reply("3")
    size = len(completion("3"))
    assert score(make_judge(server, max_reply_bytes=size), ["plan"]).tolist() == [3.0]
    judge = make_judge(server, max_reply_bytes=size - 1)
    assert math.isnan(score(judge, ["plan"])[0]) and judge.last_failures == ["unreadable"]

"""Remote endpoints at start-up, in process: an opponent model behind an endpoint must answer
(like a remote judge) before any model loads, and the reply cap is a checked key."""
import pytest

from negojax.run.build import check_judge
from negojax.run.config import ConfigError, validate_static
from openai_server import start_server, stop_server
from shipped_configs import shipped_config
from trainer_runs import PROXY_VARS, free_port


def opponent_config(base_url: str, **rollout):
    config = shipped_config("tiny_test")
    config.rollout.opponent = "model"
    config.rollout.opponent_model.update(kind="http", model="opponent", base_url=base_url,
                                         timeout_s=2.0)
    config.rollout.update(rollout)
    return config


def test_an_unreachable_opponent_endpoint_is_one_line_naming_its_key():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ConfigError) as error:
        check_judge(opponent_config(url))
    message = str(error.value)
    assert message.startswith(f"config.rollout.opponent_model.base_url: opponent endpoint {url} "
                              "is unreachable") and "\n" not in message


def test_a_live_opponent_endpoint_passes_and_an_unused_one_is_not_asked(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    server = start_server()
    try:
        check_judge(opponent_config(server.url))
    finally:
        stop_server(server)
    closed = f"http://127.0.0.1:{free_port()}/v1"
    check_judge(opponent_config(closed, setting="single_agent"))  # seats no opponent


@pytest.mark.parametrize("key", ["judge", "rollout.opponent_model"])
def test_max_reply_bytes_must_be_positive(key):
    config = shipped_config("tiny_test")
    block = config.judge if key == "judge" else config.rollout.opponent_model
    assert block.max_reply_bytes == 1_000_000
    block.max_reply_bytes = 0
    with pytest.raises(ConfigError, match=f"config.{key}.max_reply_bytes: 0 must be > 0"):
        validate_static(config)

"""Opponent seats played by a fixed model outside training (rollout.opponent=model): an
OpenAI-compatible endpoint (the real HTTP server of tests/helpers) or a local model with its own
config and chat template. Their messages reach the dialogue and the policy's context; none of
their turns is trained."""
import zlib

import numpy as np
import pytest

import negojax
from negojax.api import Model
from negojax.data import load_tasks
from negojax.models import transformer as tf
from negojax.negotiation import NegotiationConfig, NegotiationEngine, derived_seed
from negojax.negotiation.external_seats import HttpSeat, LocalSeat, OpponentFailing
from negojax.rewards.http_judge import ChatEndpoint
from negojax.sampling import SamplingParams
from negojax.tokenization import load_tokenizer

from chat_families import TEMPLATES, tiny_config
from openai_server import Reply, start_server, stop_server
from rollout_checks import seat_chat, tiny_llama

G = 2


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(negojax.default_model_dir())


@pytest.fixture(scope="module")
def policy(tok):
    return tiny_llama(tok.vocab_size, 0)


@pytest.fixture(scope="module")
def tasks():
    return [t for t in load_tasks("train") if len(t.personas) == 2][:2]


@pytest.fixture
def server():
    server = start_server()
    yield server
    stop_server(server)


def settings(**kw):
    return NegotiationConfig(**{**dict(max_turns=3, context_turns=None, max_new_tokens=8,
                                       final_max_new_tokens=8, agreement="marker"), **kw})


def reply_for(messages) -> str:
    """The endpoint's answer, fixed by the conversation it was sent."""
    code = zlib.crc32(repr([m["content"] for m in messages]).encode())
    return f"Opponent offer {code % 100000}."


def test_an_http_endpoint_plays_the_opponent_seats_untrained(tok, policy, tasks, server):
    """Full history (sampler Sessions for the policy's seats only), the policy rotating seats:
    where the opponent sits in seat 0 the endpoint also writes the final solution."""
    server.behaviour = lambda index, body: Reply(reply_for(body["messages"]))
    seat = HttpSeat(ChatEndpoint(server.url, "opponent-model", max_retries=0), tok)
    config, params = policy
    cfg = settings(max_new_tokens=12, final_max_new_tokens=12)  # a whole reply: longer is cut
    engine = NegotiationEngine(cfg, config, tok, agreement_fn=lambda states: np.array(
        [len(s.turns) >= 3 for s in states]))
    out = engine.rollout_tasks(tasks, group_size=G, policy=params, opponent=seat,
                               policy_seats="rotate", seed=0, mode="train")
    asked = {reply_for(r["messages"]): r for r in server.requests}
    opponent_turns = 0
    for d in out.dialogues:
        (trained,) = d["policy_seats"]
        assert trained == d["group_index"] % 2
        for k, turn in enumerate(d["turns"]):
            if turn["speaker"] == trained:
                assert turn["num_tokens"] > 0
                continue
            opponent_turns += 1
            assert turn["num_tokens"] == 0 and turn["text"] in asked
            request = asked[turn["text"]]
            assert request["model"] == "opponent-model"
            assert request["max_tokens"] == cfg.max_new_tokens
            # The endpoint read the whole dialogue so far (context_turns=None).
            sent = "\n".join(m["content"] for m in request["messages"])
            assert all(t["text"] in sent for t in d["turns"][:k])
        assert d["agreed"]
        assert (d["final_solution"] in asked) == (trained != 0)  # seat 0 writes it
    assert opponent_turns + G // 2 * len(tasks) == len(server.requests)
    # Only the policy's seats are trained, and the policy read what the endpoint said.
    assert {(s.group_index, s.seat) for s in out.sequences} == {(0, 0), (1, 1)}
    read = {}  # a dialogue's seat may have several records (a template re-rendered a message)
    for s in out.sequences:
        read[s.prompt_index * G + s.group_index] = read.get(
            s.prompt_index * G + s.group_index, "") + tok.decode(list(s.tokens))
    for k, d in enumerate(out.dialogues):
        (trained,) = d["policy_seats"]
        last = max(i for i, t in enumerate(d["turns"]) if t["speaker"] == trained)
        assert all(t["text"] in read[k] for t in d["turns"][:last] if t["speaker"] != trained)


def test_an_endpoint_failing_after_its_retries_stops_with_one_line(tok, policy, tasks, server):
    server.behaviour = lambda index, body: Reply(status=503)
    seat = HttpSeat(ChatEndpoint(server.url, "m", max_retries=1, backoff_base_s=0.01), tok)
    engine = NegotiationEngine(settings(max_turns=2), policy[0], tok)
    with pytest.raises(OpponentFailing) as error:
        engine.rollout_tasks(tasks[:1], group_size=G, policy=policy[1], opponent=seat, seed=0,
                             mode="train")
    message = str(error.value)
    assert "\n" not in message and server.url in message and "HTTP 503; 2 attempt(s)" in message
    assert "rerun to resume" in message and len(server.requests) >= 2


def test_a_local_model_of_another_architecture_and_template_answers(tok, policy, tasks):
    """The opponent, a Qwen3-architecture model with Gemma 3's chat template, answers each
    chat the engine builds for its seat, with its own sampler call."""
    other = load_tokenizer(negojax.default_model_dir(),
                           chat_template=f"{TEMPLATES}/gemma3.jinja")
    opponent_config = tiny_config("qwen3", other.vocab_size, num_layers=1)
    seat = LocalSeat(Model(opponent_config, tf.init_params(opponent_config, seed=3), other))
    config, params = policy
    cfg = settings(max_turns=2)
    out = NegotiationEngine(cfg, config, tok, agreement_fn=lambda s: np.zeros(len(s), bool)
                            ).rollout(tasks, group_size=G, seat_params=[params, seat], seed=0)
    for d in out.dialogues:
        assert [t["speaker"] for t in d["turns"]] == [0, 1]
        assert d["turns"][1]["num_tokens"] == 0 and d["turns"][0]["num_tokens"] > 0
    # Turn 1 is the opponent's, the engine's second model: seed (rollout seed, turn, model).
    chats = [seat_chat(tasks[d["prompt_index"]], 1, d["turns"][:1], "[AGREE]")
             for d in out.dialogues]
    again = seat.respond(chats, max_new_tokens=cfg.max_new_tokens,
                         sampling=SamplingParams(cfg.temperature, cfg.top_p),
                         seed=derived_seed(0, 1, 1))
    assert [d["turns"][1]["text"] for d in out.dialogues] == again
    assert any(again)
    assert {s.seat for s in out.sequences} == {0} and len(out.sequences) == len(out.dialogues)


def test_a_reply_past_the_turns_budget_is_cut_to_it_in_the_policys_tokens(tok, server):
    """An endpoint that ignores max_tokens: the policy reads no more of it than of its own
    turn."""
    server.behaviour = lambda index, body: Reply("word " * 5000)
    seat = HttpSeat(ChatEndpoint(server.url, "m", max_retries=0), tok)
    (text,) = seat.respond([[{"role": "user", "content": "Your offer?"}]], max_new_tokens=8,
                           sampling=SamplingParams(1.0, 1.0), seed=0)
    assert text.startswith("word word") and len(tok.encode(text)) <= 8


def test_a_flooding_endpoint_stops_the_run_unread(tok, server):
    server.behaviour = lambda index, body: Reply("x" * 10_000_000)
    seat = HttpSeat(ChatEndpoint(server.url, "m", max_retries=2), tok)
    with pytest.raises(OpponentFailing) as error:
        seat.respond([[{"role": "user", "content": "Your offer?"}]], max_new_tokens=8,
                     sampling=SamplingParams(1.0, 1.0), seed=0)
    assert "reply over 1000000 bytes" in str(error.value) and len(server.requests) == 1

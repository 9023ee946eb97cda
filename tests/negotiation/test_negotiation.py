"""The negotiation engine with a tiny random model on the SmolLM2 tokenizer: turn order, context
windows, masks, lockstep batching, agreement and no-agreement handling, Session continuation."""

import numpy as np
import pytest

import negojax
from negojax.data import load_tasks
from negojax.negotiation import (DialogueState, JudgeAgreement, MarkerAgreement,
                                 NegotiationConfig, NegotiationEngine, Opponents, Turn)
from negojax.negotiation.seats import policy_seat_lineups
from negojax.rewards import Judge
from negojax.sampling import Session, sample
from negojax.tokenization import load_tokenizer
from rollout_checks import check_full_history_records, check_windowed_record, tiny_llama

G = 2


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(negojax.default_model_dir())


@pytest.fixture(scope="module")
def tiny(tok):
    return tiny_llama(tok.vocab_size, 0, 1)


@pytest.fixture(scope="module")
def tasks():
    train = load_tasks("train")
    return {n: [t for t in train if len(t.personas) == n][:2] for n in (2, 3)}


def settings(**kw):
    # One sampling mode and one token buffer everywhere, so the tests share compiled programs.
    base = dict(max_turns=3, context_turns=2, max_new_tokens=8, top_p=1.0,
                final_temperature=0.7, final_top_p=1.0, final_max_new_tokens=8,
                agreement="marker")
    base.update(kw)
    return NegotiationConfig(**base)


class CountingSample:
    """The real sampler, counting calls and the params each call used."""

    def __init__(self):
        self.calls = []

    def __call__(self, params, *args, **kw):
        self.calls.append(params)
        return sample(params, *args, **kw)


def agree_after(k):
    return lambda states: np.array([len(s.turns) >= k for s in states])


def engine(tok, tiny, cfg, **kw):
    return NegotiationEngine(cfg, tiny[0], tok, **kw)


def expected_calls(dialogues, num_turns, model_of_seat):
    """Lockstep: per turn, one call per distinct model among the current speakers."""
    return sum(len({model_of_seat[d["turns"][t]["speaker"]] for d in dialogues
                    if len(d["turns"]) > t}) for t in range(num_turns))


def check_sequence_against_transcript(tok, seq, rollout, tasks, cfg):
    check_windowed_record(lambda chat: tok.apply_chat_template(chat, True),
                          lambda ids: tok.decode(ids).strip(), seq,
                          rollout.dialogues[seq.prompt_index * G + seq.group_index],
                          tasks[seq.prompt_index], cfg.context_turns)


def test_two_agents_frozen_opponent_no_agreement_train(tok, tiny, tasks):
    """Fixed first speaker: seats alternate 0,1,0,1; only seat 0 (the policy) yields sequences;
    no agreement in train mode means no final solution, rounds = max_turns."""
    config, p, q = tiny
    cfg = settings(max_turns=4)
    counter = CountingSample()
    out = engine(tok, tiny, cfg, sample_fn=counter).rollout(
        tasks[2], group_size=G, seat_params=[p, q], trainable_seats=(0,), seed=0)
    for d in out.dialogues:
        assert [x["speaker"] for x in d["turns"]] == [0, 1, 0, 1]
        assert [x["persona"] for x in d["turns"]] == [d["personas"][s] for s in (0, 1, 0, 1)]
        assert not d["agreed"] and d["agreement_turn"] is None and d["final_solution"] is None
    assert [(d["prompt_index"], d["group_index"]) for d in out.dialogues] == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert out.agreed.shape == (2, G) and not out.agreed.any()
    assert (out.rounds == 4).all() and out.final_solutions == [None] * 4
    # Fixed opener: each turn every dialogue's speaker uses the same model -> one call per turn.
    assert len(counter.calls) == 4 == out.stats["sampler_calls"]
    assert [c is p for c in counter.calls] == [True, False, True, False]
    assert len(out.sequences) == 4 * 2 and {s.seat for s in out.sequences} == {0}
    for seq in out.sequences:
        check_sequence_against_transcript(tok, seq, out, tasks[2], cfg)


def test_rotate_seats_the_policy_in_each_seat_across_the_group(tok, tiny, tasks):
    """policy_seats=rotate: dialogue g of a group seats the policy in g mod 2; the lineups with
    the policy first and second are separate batches, and only the policy's seat is trained."""
    config, p, q = tiny
    counter = CountingSample()
    out = engine(tok, tiny, settings(max_turns=2), sample_fn=counter).rollout_tasks(
        tasks[2], group_size=G, policy=p, opponent=q, policy_seats="rotate", seed=0, mode="train")
    assert [d["policy_seats"] for d in out.dialogues] == [[0], [1], [0], [1]]
    assert [c is p for c in counter.calls] == [True, False, False, True]
    assert sorted((s.prompt_index, s.group_index, s.seat) for s in out.sequences) == [
        (0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 1)]
    for seq in out.sequences:
        check_sequence_against_transcript(tok, seq, out, tasks[2], settings(max_turns=2))


def test_three_agents_random_first_speaker_lockstep(tok, tiny, tasks):
    config, p, q = tiny
    cfg = settings(max_turns=4, first_speaker="random")
    counter = CountingSample()
    eng = engine(tok, tiny, cfg, sample_fn=counter)
    out = eng.rollout(tasks[3], group_size=G, seat_params=[p, q, q], trainable_seats=(0,),
                      seed=3)
    firsts = [d["first_speaker"] for d in out.dialogues]
    assert len(set(firsts)) > 1
    for d in out.dialogues:
        assert len(d["personas"]) == 3
        assert [x["speaker"] for x in d["turns"]] == [(d["first_speaker"] + t) % 3
                                                      for t in range(4)]
    calls = expected_calls(out.dialogues, 4, [0, 1, 1])
    assert len(counter.calls) == calls == out.stats["sampler_calls"] <= 4 * 2
    assert calls > 4  # both models spoke in some turn, still one call each
    for seq in out.sequences:
        assert seq.seat == 0
        check_sequence_against_transcript(tok, seq, out, tasks[3], cfg)
    assert len(out.sequences) == sum(x["speaker"] == 0 for d in out.dialogues
                                     for x in d["turns"])
    again = eng.rollout(tasks[3], group_size=G, seat_params=[p, q, q], seed=3)
    assert again.dialogues == out.dialogues  # seeded: same seed, same dialogues


def test_live_policy_trains_every_seat_with_one_call_per_turn(tok, tiny, tasks):
    config, p, _ = tiny
    cfg = settings(max_turns=4, first_speaker="random")
    counter = CountingSample()
    out = engine(tok, tiny, cfg, sample_fn=counter).rollout(
        tasks[2], group_size=G, seat_params=[p, p], trainable_seats=(0, 1), seed=5)
    assert len(counter.calls) == 4
    assert len(out.sequences) == 4 * 4 and {s.seat for s in out.sequences} == {0, 1}
    for seq in out.sequences:
        check_sequence_against_transcript(tok, seq, out, tasks[2], cfg)


def test_agreement_stops_dialogue_and_agent_one_writes_solution(tok, tiny, tasks):
    config, p, q = tiny
    cfg = settings(max_turns=5, train_on_final_solution=True)
    counter = CountingSample()
    out = engine(tok, tiny, cfg, sample_fn=counter, agreement_fn=agree_after(2)).rollout(
        tasks[2], group_size=G, seat_params=[p, q], seed=0)
    assert out.agreed.all() and (out.rounds == 2).all()
    assert all(d["agreement_turn"] == 2 and len(d["turns"]) == 2 for d in out.dialogues)
    assert all(isinstance(s, str) for s in out.final_solutions)
    assert len(counter.calls) == 2 + 1 and counter.calls[-1] is p  # one batched final call
    finals = [s for s in out.sequences if (s.turn[s.loss_mask] == 2).all()]
    assert len(finals) == 4 and all(s.seat == 0 for s in finals)
    for s in finals:
        text = out.final_solutions[s.prompt_index * G + s.group_index]
        assert tok.decode(s.tokens[s.loss_mask]).strip() == text
        assert "The parties reached agreement" in tok.decode(s.tokens[~s.loss_mask])
    default = engine(tok, tiny, settings(max_turns=5), agreement_fn=agree_after(2)).rollout(
        tasks[2], group_size=G, seat_params=[p, q], seed=0)
    assert len(default.sequences) == 4 and all((s.turn[s.loss_mask] == 0).all()
                                               for s in default.sequences)


def test_eval_mode_writes_solution_without_agreement(tok, tiny, tasks):
    config, p, q = tiny
    counter = CountingSample()
    out = engine(tok, tiny, settings(max_turns=2), sample_fn=counter).rollout(
        tasks[2], group_size=G, seat_params=[p, q], seed=1, mode="eval")
    assert not out.agreed.any() and (out.rounds == 2).all()
    assert all(isinstance(s, str) for s in out.final_solutions)
    assert len(counter.calls) == 3


class CountingSession(Session):
    generate_calls = 0

    def generate(self, *args, **kw):
        CountingSession.generate_calls += 1
        return super().generate(*args, **kw)


def test_full_history_continues_sessions(tok, tiny, tasks):
    """context_turns=None: every turn's prompt is the template's rendering of the seat's whole
    chat, continued from the KV cache; each sampled token is trained exactly once, in a record
    that is exactly what the cache held (recorded log-probs equal a fresh forward over it). A
    random model samples token splits the tokenizer would not produce, so a re-rendered message
    can cut a row back: then a dialogue's seat has several records."""
    config, p, q = tiny
    CountingSession.generate_calls = 0
    cfg = settings(max_turns=3, context_turns=None, first_speaker="random")
    out = engine(tok, tiny, cfg, session_cls=CountingSession).rollout(
        tasks[2], group_size=G, seat_params=[p, q], trainable_seats=(0, 1), seed=2)
    assert CountingSession.generate_calls == out.stats["sampler_calls"] == expected_calls(
        out.dialogues, 3, [0, 1])
    check_full_history_records(lambda chat: tok.apply_chat_template(chat, True), out, tasks[2],
                               {0: p, 1: q}, config, (0, 1), G)


def test_full_history_self_play_decodes_only_the_speaking_seat(tok, tiny, tasks):
    """Both seats on one model: a Session per seat, so each turn is one call over one row per
    dialogue (a Session per model would also step the silent seat's rows)."""
    config, p, _ = tiny
    batches = []

    class RecordingSession(Session):
        def generate(self, *args, **kw):
            batches.append(self.batch)
            return super().generate(*args, **kw)

    out = engine(tok, tiny, settings(max_turns=3, context_turns=None),
                 session_cls=RecordingSession).rollout(
        tasks[2], group_size=G, seat_params=[p, p], trainable_seats=(0, 1), seed=2)
    dialogues = len(out.dialogues)
    assert batches == [dialogues] * 3 == [dialogues] * out.stats["sampler_calls"]
    assert {(s.prompt_index, s.group_index, s.seat) for s in out.sequences} == {
        (p, g, seat) for p in range(len(tasks[2])) for g in range(G) for seat in (0, 1)}


def test_marker_agreement_needs_every_seat(tok, tasks):
    task = tasks[3][0]

    def state(*turns):
        s = DialogueState(task, 0, 0, 0)
        s.turns = [Turn(sp, text, [], np.zeros(0), False) for sp, text in turns]
        return s

    check = MarkerAgreement("[AGREE]")
    got = check([state((0, "ok [AGREE]"), (1, "fine [AGREE]")),
                 state((0, "ok [AGREE]"), (1, "fine [AGREE]"), (2, "yes [AGREE]")),
                 state((0, "ok [AGREE]"), (1, "no"), (2, "yes [AGREE]"), (0, "[AGREE]")),
                 state((0, "no"), (1, "x [AGREE]"), (2, "y [AGREE]"), (0, "z [AGREE]"))])
    assert got.tolist() == [False, True, False, True]


class ScriptedJudge(Judge):
    """Scripted agreement probabilities; NaN stands for a failed remote judgement."""

    def __init__(self, probs):
        self.probs, self.seen = probs, []

    def evaluate(self, question, conversations):
        self.seen += conversations
        return np.asarray(self.probs[:len(conversations)], np.float64)


def test_judge_agreement_reads_latest_turns_and_threshold(tasks):
    task = tasks[2][0]
    states = []
    for texts in (["a"], ["b", "c"], ["d", "e", "f"], ["g", "h"]):
        s = DialogueState(task, 0, 0, 0)
        s.turns = [Turn(k % 2, x, [], np.zeros(0), False) for k, x in enumerate(texts)]
        states.append(s)
    judge = ScriptedJudge([0.7, 0.4, float("nan")])
    got = JudgeAgreement(judge, 0.5)(states)
    assert got.tolist() == [False, True, False, False]  # first state: seat 1 not yet spoken
    assert len(judge.seen) == 3
    rendered = " ".join(m["content"] for m in judge.seen[1])
    assert "e" in rendered and "f" in rendered


def test_errors_say_what_to_fix(tok, tiny, tasks):
    config, p, q = tiny
    eng = engine(tok, tiny, settings())
    with pytest.raises(ValueError, match=r"task .* has 3 personas but seat_params has 2 seats"):
        eng.rollout(tasks[3], group_size=G, seat_params=[p, q], seed=0)
    with pytest.raises(ValueError, match="group_size=0"):
        eng.rollout(tasks[2], group_size=0, seat_params=[p, q], seed=0)
    with pytest.raises(ValueError, match=r"trainable_seats .* seats \[2\] do not exist"):
        eng.rollout(tasks[2], group_size=G, seat_params=[p, q], trainable_seats=(2,), seed=0)
    for bad, key in ((dict(max_turns=0), "max_turns"), (dict(context_turns=0), "context_turns"),
                     (dict(first_speaker="last"), "first_speaker"),
                     (dict(agreement="vote"), "agreement"), (dict(top_p=0), "top_p"),
                     (dict(agreement_threshold=2), "agreement_threshold")):
        with pytest.raises(ValueError, match=rf"^rollout\.{key}: "):
            NegotiationConfig(**bad)
    with pytest.raises(ValueError, match="needs a judge"):
        NegotiationEngine(NegotiationConfig(agreement="judge"), config, tok)
    with pytest.raises(ValueError, match=r"^rollout\.max_turns: 0 "):
        NegotiationEngine({"max_turns": 0, "group_size": 4}, config, tok)


def _snapshots():
    """Stands for copies of the policy's params: 0, 1, 2, ... in the order they are taken."""
    values = iter(range(100))
    return lambda: next(values)


def test_policy_seat_lineups():
    assert policy_seat_lineups("first", 3, 4) == [(0,)] * 4
    assert policy_seat_lineups("rotate", 3, 4) == [(0,), (1,), (2,), (0,)]
    assert policy_seat_lineups("all", 2, 3) == [(0, 1)] * 3
    with pytest.raises(ValueError, match="rollout.policy_seats: 'last' is not one of"):
        policy_seat_lineups("last", 2, 2)


def test_opponents_live_frozen_and_pool():
    assert Opponents("live", refresh=1, pool_size=4, seed=0).for_step(1, _snapshots()) is None
    # Refreshed every step, a frozen opponent is the policy itself: no copy is taken.
    every_step, take = Opponents("frozen", refresh=1, pool_size=4, seed=0), _snapshots()
    assert [every_step.for_step(s, take) for s in (1, 2)] == [None] * 2
    assert take() == 0
    frozen, take = Opponents("frozen", refresh=2, pool_size=4, seed=0), _snapshots()
    assert [frozen.for_step(s, take) for s in (1, 2, 3, 4, 5)] == \
        [0, 0, 1, 1, 2]
    assert frozen.snapshots == [2]

    def pool_picks():
        pool, take = Opponents("pool", refresh=1, pool_size=2, seed=0), _snapshots()
        picks = [pool.for_step(s, take) for s in range(1, 9)]
        assert pool.snapshots == [6, 7]  # step s takes snapshot s - 1; the pool keeps two
        return picks
    picks = pool_picks()
    assert picks == pool_picks()  # drawn from (seed, step)
    assert {s - 1 - p for s, p in zip(range(2, 9), picks[1:])} == {0, 1}  # either one is drawn
    with pytest.raises(ValueError, match="rollout.opponent: 'mirror' is not one of"):
        Opponents("mirror", refresh=1, pool_size=1, seed=0)


def test_judge_mode_checks_after_every_seat_spoke(tok, tiny, tasks):
    config, p, q = tiny
    judge = ScriptedJudge([1.0] * 8)
    out = NegotiationEngine(settings(agreement="judge", max_turns=4), config, tok,
                            judge=judge).rollout(tasks[2], group_size=G, seat_params=[p, q],
                                                 seed=0)
    assert out.agreed.all() and (out.rounds == 2).all() and len(judge.seen) == 4
    assert "[AGREE]" not in tok.decode(out.sequences[0].tokens)  # no marker instructions


def test_max_rounds_gives_every_party_a_turn_so_a_four_party_dialogue_can_agree(tok, tiny):
    """max_turns=3 cuts a 4-party dialogue off before its fourth seat speaks, so marker
    agreement never becomes possible; max_rounds=1 gives it 4 turns and it agrees on the
    fourth. The model writes only the marker word: its residual stream is the same vector at
    every position and its head reads one token from it."""
    config, p, _ = tiny
    word = tok.encode(" agree")
    assert len(word) == 1
    params = {**p, "embed": np.ones_like(p["embed"]), "final_norm": np.ones_like(p["final_norm"]),
              "lm_head": np.zeros_like(p["lm_head"]),
              "layers": {**p["layers"], "wo": np.zeros_like(p["layers"]["wo"]),
                         "w_down": np.zeros_like(p["layers"]["w_down"])}}
    params["lm_head"][:, word[0]] = 10.0
    four = [t for t in load_tasks("train") if len(t.personas) == 4][:1]
    for context in (2, None):  # windowed turns, and Sessions sized by the same turn limit
        cut = engine(tok, tiny, settings(max_turns=3, context_turns=context,
                                         marker="agree")).rollout(
            four, group_size=G, seat_params=[params] * 4, seed=0)
        assert not cut.agreed.any() and (cut.rounds == 3).all()
        heard = []
        out = engine(tok, tiny, settings(max_turns=3, max_rounds=1, context_turns=context,
                                         marker="agree")).rollout(
            four, group_size=G, seat_params=[params] * 4, seed=0, progress=heard.append)
        assert out.agreed.all() and (out.rounds == 4).all()
        assert [x["speaker"] for x in out.dialogues[0]["turns"]] == [0, 1, 2, 3]
        assert all("agree" in x["text"] for x in out.dialogues[0]["turns"])
        assert heard[3].startswith("rollout turn 4/4 ")


def test_turn_limit_is_rounds_times_parties_when_rounds_are_set():
    assert NegotiationConfig(max_turns=3).turn_limit(4) == 3
    assert [NegotiationConfig(max_turns=3, max_rounds=2).turn_limit(n) for n in (2, 3, 4)] == \
        [4, 6, 8]
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"^rollout\.max_rounds: .* must be an integer >= 0"):
            NegotiationConfig(max_rounds=bad)

"""rollout.scheduler=continuous against lockstep with a tiny random model: same dialogues at any
slot count, greedy equal to lockstep token for token, slots reused while others still decode,
and judge failures handled as lockstep handles them (a real HTTP judge on 127.0.0.1)."""
import zlib

import numpy as np
import pytest

from negojax.negotiation import JudgeAgreement, NegotiationConfig
from negojax.rewards import HttpJudge
from negojax.sampling import sample
from negojax.sampling.slots import SlotCache
from openai_server import Reply, start_server, stop_server
from test_negotiation import G, engine, settings, tasks, tiny, tok  # noqa: F401 (fixtures)


def varied_stops(eng, tok):
    """An eighth of the vocabulary stops a turn, so a random model's turns end at varied
    lengths, most of them inside a decode chunk."""
    eng.stop_ids = list(range(0, tok.vocab_size, 8))
    return eng


def agree_by_text(states):
    """Agreement on about a third of the checks, decided by what was said."""
    return np.array([len(s.turns) >= 2 and sum(s.turns[-1].tokens) % 3 == 0 for s in states])


def play(tok, tiny, tasks, seats, seed=0, agreement_fn=agree_by_text, **kw):
    config, p, q = tiny
    eng = varied_stops(engine(tok, tiny, settings(**kw), agreement_fn=agreement_fn), tok)
    params = [p, q, q][:seats]
    return eng.rollout(tasks[seats], group_size=G, seat_params=params,
                       trainable_seats=tuple(range(seats)), seed=seed)


def same_rollout(a, b, logp_exact=True):
    assert a.dialogues == b.dialogues
    assert (a.agreed == b.agreed).all() and (a.rounds == b.rounds).all()
    assert a.final_solutions == b.final_solutions
    order = lambda r: sorted(r.sequences, key=lambda s: (s.prompt_index, s.group_index, s.seat,
                                                         int(s.turn.max())))
    assert len(a.sequences) == len(b.sequences)
    for x, y in zip(order(a), order(b)):
        for field in ("tokens", "loss_mask", "agent", "turn"):
            assert (getattr(x, field) == getattr(y, field)).all()
        if logp_exact:
            assert (x.old_logp == y.old_logp).all()
        else:
            np.testing.assert_allclose(x.old_logp, y.old_logp, atol=1e-5)


def test_same_seed_gives_the_same_dialogues_at_two_slot_counts(tok, tiny, tasks):
    """Sampled at T=0.7: each turn draws from its own (seed, dialogue, turn) stream."""
    common = dict(scheduler="continuous", max_turns=4, first_speaker="random", decode_chunk=3)
    two = play(tok, tiny, tasks, 3, seed=0, decode_slots=2, **common)
    five = play(tok, tiny, tasks, 3, seed=0, decode_slots=5, **common)
    same_rollout(two, five, logp_exact=False)
    lengths = {x["num_tokens"] for d in two.dialogues for x in d["turns"]}
    assert len(lengths) > 3 and len(set(two.rounds.ravel().tolist())) > 1
    other = play(tok, tiny, tasks, 3, seed=1, decode_slots=2, **common)
    assert other.dialogues != two.dialogues


def test_greedy_continuous_equals_greedy_lockstep(tok, tiny, tasks):
    """Two models (policy, frozen opponents), random openers, turns of varied lengths, early
    agreement and greedy final solutions; three slots for four dialogues per model."""
    common = dict(temperature=0.0, final_temperature=0.0, max_turns=4, first_speaker="random",
                  train_on_final_solution=True)
    lock = play(tok, tiny, tasks, 3, seed=1, **common)
    cont = play(tok, tiny, tasks, 3, seed=1, scheduler="continuous", decode_slots=3,
                decode_chunk=3, **common)
    same_rollout(lock, cont, logp_exact=False)
    assert len(set(lock.rounds.ravel().tolist())) > 1
    assert cont.stats["decode_tokens"] == lock.stats["decode_tokens"]
    assert cont.stats["prompt_tokens_reused"] > 0  # later turns start from earlier openings


def test_a_slot_freed_mid_turn_is_reused_while_the_others_decode(tiny):
    """Slot 0's turn ends on its budget after 3 tokens while slot 1 writes on; the next prompt
    takes slot 0 between decode calls; a call told a prompt waits ends as a slot frees; and
    every turn equals the lockstep sampler's."""
    config, p, _ = tiny
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 1000, n).tolist() for n in (40, 23, 57)]
    budgets = [3, 8, 6]
    slots = SlotCache(p, config, 2)
    slots.insert([0, 1], prompts[:2], np.zeros((2, 2)), 8)
    slots.budget[0] = budgets[0]
    got = {0: [], 1: [], 2: []}
    first = slots.decode(4)
    assert first.ended == {0: False} and first.steps == 4 and slots.free_slots() == [0]
    got[0], got[1] = first.tokens[0], first.tokens[1]
    slots.insert([0], prompts[2:], np.zeros((1, 2)), budgets[2])
    assert slots.live.tolist()[:2] == [True, True]
    early = slots.decode(8, until_free=True)  # a waiting prompt could take slot 1 at once
    assert early.steps == 4 and early.ended == {1: False} and slots.free_slots() == [1]
    got[1] += early.tokens[1]
    got[2] += early.tokens[0]
    while slots.busy:
        out = slots.decode(4)
        got[1] += out.tokens.get(1, [])
        got[2] += out.tokens.get(0, [])
    for i, prompt in enumerate(prompts):
        ref = sample(p, config, [prompt], max_new_tokens=budgets[i])
        assert got[i] == ref.tokens[0]


class FailingCheck:
    """Fault injection: the wrapped check raises on its `fail_on`-th call."""

    def __init__(self, check, fail_on):
        self.check, self.fail_on, self.calls = check, fail_on, 0

    def __call__(self, states):
        self.calls += 1
        if self.calls == self.fail_on:
            raise ConnectionError("judge down")
        return self.check(states)


def judge_by_text(index, body):
    """Each agreement check's answer fixed by its text: yes, no, or HTTP 500 (a failed
    judgement, NaN: not agreed)."""
    code = zlib.crc32(body["messages"][-1]["content"].encode()) % 3
    return Reply("yes") if code == 0 else Reply("no") if code == 1 else Reply(status=500)


def test_a_failed_judge_call_is_handled_as_in_lockstep(tok, tiny, tasks):
    server = start_server(judge_by_text)
    try:
        judge = HttpJudge(server.url, "judge", max_retries=0, concurrency=2)
        check = JudgeAgreement(judge, 0.5)
        common = dict(temperature=0.0, max_turns=4, agreement="judge")
        lock = play(tok, tiny, tasks, 2, agreement_fn=check, **common)
        failures = judge.failures
        cont = play(tok, tiny, tasks, 2, agreement_fn=check, scheduler="continuous",
                    decode_slots=3, judge_workers=2, **common)
        assert failures > 0 and judge.failures == 2 * failures
        same_rollout(lock, cont, logp_exact=False)
        for scheduler in ("lockstep", "continuous"):
            with pytest.raises(ConnectionError, match="judge down"):
                play(tok, tiny, tasks, 2, agreement_fn=FailingCheck(check, 2),
                     scheduler=scheduler, judge_workers=2, **common)
    finally:
        stop_server(server)


def test_scheduler_settings_are_checked():
    for bad, message in ((dict(scheduler="async"), r"rollout\.scheduler: 'async' is not one of"),
                         (dict(decode_slots=0), r"rollout\.decode_slots: 0 must be"),
                         (dict(decode_chunk=-1), r"rollout\.decode_chunk: -1 must be"),
                         (dict(judge_workers=-1), r"rollout\.judge_workers: -1 must be"),
                         (dict(prefix_cache_rows=-1), r"rollout\.prefix_cache_rows: -1 must be"),
                         (dict(scheduler="continuous", context_turns=None),
                          r"rollout\.scheduler: 'continuous' needs rollout\.context_turns")):
        with pytest.raises(ValueError, match=message):
            NegotiationConfig(**bad)

"""The single-agent baseline's rollout: one prompt per task with every persona's view, G sampled
answers, each the transcript's one turn and final solution, its tokens (and only those) trained."""
import numpy as np
import pytest

import negojax
from negojax.data import load_tasks
from negojax.negotiation import NegotiationConfig, SingleAgentEngine, prompts
from negojax.rewards import LocalJudge, score_final_solutions

TINY = dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
            head_dim=8)


@pytest.fixture(scope="module")
def tiny():
    return negojax.load_model("default", random_init=True, overrides=TINY)


@pytest.fixture(scope="module")
def rollout(tiny):
    engine = SingleAgentEngine(NegotiationConfig(temperature=1.0, final_max_new_tokens=6),
                               tiny.config, tiny.tokenizer)
    tasks = load_tasks("train")[:2]
    return tasks, engine.rollout_tasks(tasks, group_size=3, policy=tiny.params, seed=0,
                                       mode="train")


def test_one_prompt_holds_the_dilemma_and_every_persona_view(rollout, tiny):
    tasks, out = rollout
    for seq in out.sequences:
        task = tasks[seq.prompt_index]
        context = tiny.tokenizer.decode(seq.tokens[~seq.loss_mask].tolist())
        assert task.dilemma in context
        for p in task.personas:
            for text in (p.name, p.core_value, p.wants, p.fears):
                assert text in context
        expected = tiny.tokenizer.apply_chat_template(
            prompts.single_agent_messages(task.dilemma, task.personas), True)
        assert seq.tokens[~seq.loss_mask].tolist() == expected


def test_each_answer_is_one_turn_the_final_solution_and_its_tokens_are_trained(rollout, tiny):
    tasks, out = rollout
    assert len(out.dialogues) == len(out.sequences) == 2 * 3
    assert out.agreed.all() and (out.rounds == 1).all()
    for k, (record, seq) in enumerate(zip(out.dialogues, out.sequences)):
        assert (seq.prompt_index, seq.group_index, seq.seat) == divmod(k, 3) + (0,)
        assert record["setting"] == "single_agent" and len(record["turns"]) == 1
        answer = record["turns"][0]
        assert answer["text"] == record["final_solution"] == out.final_solutions[k]
        # The trained tokens are exactly the answer: a suffix after the prompt, with the
        # sampler's log-probs there and 0 elsewhere.
        n = int(seq.loss_mask.sum())
        assert n == answer["num_tokens"] and seq.loss_mask[-n:].all()
        assert np.all(seq.old_logp[~seq.loss_mask] == 0) and np.all(seq.old_logp[-n:] < 0)
        assert (seq.turn[-n:] == 0).all() and (seq.agent[-n:] == 0).all()
    # Sampled at temperature 1: the G answers to one prompt differ.
    assert len({tuple(s.tokens[s.loss_mask]) for s in out.sequences[:3]}) > 1


def test_the_judge_scores_answers_as_it_scores_final_solutions(rollout, tiny):
    tasks, out = rollout
    judge = LocalJudge(tiny)
    scores, failures = score_final_solutions(judge, tasks, out.final_solutions, 3)
    direct = judge.ca_score([tasks[k // 3].dilemma for k in range(6)],
                            [tasks[k // 3].personas for k in range(6)], out.final_solutions)
    np.testing.assert_allclose(scores.reshape(-1), direct, rtol=1e-6)
    assert failures == [None] * 6


def test_a_task_without_personas_is_refused(tiny):
    engine = SingleAgentEngine(None, tiny.config, tiny.tokenizer)
    with pytest.raises(ValueError, match="have no personas"):
        engine.rollout_tasks(load_tasks("open_ended")[:1], group_size=1, policy=tiny.params,
                             seed=0, mode="eval")

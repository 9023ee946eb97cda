"""Judge math against NumPy, the rubric prompts, reply parsing, reward composition and the
judge-reliability statistics against hand-computed values."""
import json
import math

import jax
import numpy as np
import pytest

from negojax.data.records import Persona
from negojax.rewards import (AGREEMENT, CA_RUBRIC, CA_SCORE, PREFERENCE, Judge, agreement_messages,
                             binary_probability, ca_score_messages, compose_rewards,
                             expected_score, format_persona, preference_messages)
from negojax.rewards import reliability as rel
from negojax.rewards.replies import parse_reply

FIXED_LOGITS = np.array([
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [5.0, -1.0, 0.5, 2.0, -3.0, 1.0],
    [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0],
    [1000.0, 0.0, 0.0, 0.0, 0.0, 999.0],   # must not overflow
    [-50.0, -50.0, -50.0, -50.0, 40.0, -50.0],
])


def numpy_expected_score(logits):
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    return probs @ np.arange(6)


def test_expected_score_matches_numpy_on_fixed_logits():
    got = np.asarray(expected_score(FIXED_LOGITS))
    np.testing.assert_allclose(got, numpy_expected_score(FIXED_LOGITS), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[[0, 3, 4]], [2.5, 5 / (1 + math.e), 4.0], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(jax.jit(expected_score)(FIXED_LOGITS)), got, rtol=1e-6)


def test_binary_probability_matches_a_two_way_softmax():
    yes = np.array([0.0, 2.0, -1.5, 800.0, -800.0, 3.0])
    no = np.array([0.0, -1.0, 0.5, 799.0, 0.0, 3.0 + math.log(3)])
    pair = np.stack([yes, no], axis=1)
    shifted = np.exp(pair - pair.max(axis=1, keepdims=True))
    reference = shifted[:, 0] / shifted.sum(axis=1)
    got = np.asarray(binary_probability(yes, no))
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[[0, 5]], [0.5, 0.25], rtol=1e-5)


def test_personas_format_the_same_from_the_dataclass_and_from_a_dict():
    fields = dict(name="Mara", core_value="confidentiality", wants="keep the client's trust",
                  fears="betraying a confidence", style="calm and precise")
    as_dataclass = format_persona(Persona(id="p1", **fields))
    assert as_dataclass == format_persona(fields)
    assert all(value in as_dataclass for value in fields.values())


def test_prompts_carry_the_inputs_the_rubric_and_the_answer_format():
    personas = [{"name": n, "core_value": "v", "wants": "w", "fears": "f", "style": "s"}
                for n in ("Mara", "Theo")]
    turns = [("Mara", "I cannot break confidence."), ("Theo", "An innocent man is in jail.")]
    agreement = agreement_messages("The therapist dilemma.", personas, turns)
    score = ca_score_messages("The therapist dilemma.", personas, "Help the client come forward.")
    preference = preference_messages("What now?", "Call the police.", "Support a confession.")
    for messages in (agreement, score, preference):
        assert [m["role"] for m in messages] == ["system", "user"]
    assert "I cannot break confidence." in agreement[1]["content"]
    assert agreement[1]["content"].endswith("Answer yes or no.")
    assert "Help the client come forward." in score[1]["content"] and "Theo" in score[1]["content"]
    assert score[1]["content"].endswith("Answer with a single digit from 0 to 5.")
    assert CA_RUBRIC in score[0]["content"] and CA_RUBRIC in preference[0]["content"]
    assert preference[1]["content"].endswith("Answer A or B.")
    for aspect in ("Knowledge", "Benevolence", "Power", "Vitality"):
        assert aspect in CA_RUBRIC
    for level in range(6):
        assert f"\n{level} - " in CA_RUBRIC


@pytest.mark.parametrize("question, text, expected", [
    (CA_SCORE, "4", 4.0), (CA_SCORE, "Score: 3.", 3.0), (CA_SCORE, "I give it 10, no, 5", None),
    (CA_SCORE, "excellent", None), (CA_SCORE, "9", None),
    (AGREEMENT, "Yes.", 1.0), (AGREEMENT, "no, not yet", 0.0), (AGREEMENT, "They know it", None),
    (PREFERENCE, "B", 0.0), (PREFERENCE, " A.", 1.0), (PREFERENCE, "Response B is better", 0.0),
    (PREFERENCE, "Answer: A", 1.0), (PREFERENCE, "A tough call", 1.0), (PREFERENCE, "both", None),
])
def test_reply_parsing(question, text, expected):
    assert parse_reply(question, text) == expected


class RecordingJudge(Judge):
    def __init__(self):
        self.calls = []

    def evaluate(self, question, conversations):
        self.calls.append((question, conversations))
        return np.full(len(conversations), 0.5)


def test_judge_builds_the_shared_prompts_and_checks_batch_lengths():
    judge = RecordingJudge()
    personas = [[{"name": "A", "core_value": "v", "wants": "w", "fears": "f", "style": "s"}]] * 2
    assert judge.ca_score(["d1", "d2"], personas, ["s1", "s2"]).shape == (2,)
    question, conversations = judge.calls[-1]
    assert question == CA_SCORE
    assert conversations[1] == ca_score_messages("d2", personas[1], "s2")
    judge.agreement(["d"], personas[:1], [[("A", "ok")]])
    judge.prefer(["q"], ["a"], ["b"])
    assert [q for q, _ in judge.calls] == [CA_SCORE, AGREEMENT, PREFERENCE]
    with pytest.raises(ValueError, match="differ in length"):
        judge.ca_score(["d1"], personas, ["s1", "s2"])


def test_reward_is_the_ca_score_if_agreed_else_zero():
    rewards, valid, parts = compose_rewards([[4.5, 3.0], [2.0, 5.0]],
                                            np.array([[True, False], [True, True]]),
                                            fallback="zero")
    np.testing.assert_array_equal(rewards, [[4.5, 0.0], [2.0, 5.0]])
    assert valid.all() and list(parts) == ["ca"]


@pytest.mark.parametrize("fallback, reward, is_valid", [("zero", 0.0, True), ("drop", 0.0, False)])
def test_failed_ca_scores_follow_the_fallback(fallback, reward, is_valid):
    scores = np.array([np.nan, 4.0, np.nan])
    agreed = np.array([True, True, False])  # a failed score without agreement is just 0
    rewards, valid, _ = compose_rewards(scores, agreed, fallback=fallback)
    np.testing.assert_array_equal(rewards, [reward, 4.0, 0.0])
    np.testing.assert_array_equal(valid, [is_valid, True, True])


def test_named_components_are_off_by_default_and_logged_on_their_own():
    scores, agreed = np.array([4.0, 3.0, 0.0]), np.array([True, True, False])
    stats = {"overlong_turns": np.array([0, 2, 1])}
    plain, _, plain_parts = compose_rewards(scores, agreed, fallback="zero", dialogue_stats=stats)
    rewards, _, parts = compose_rewards(scores, agreed, fallback="zero",
                                        components={"overlong_turn_penalty": 0.25},
                                        dialogue_stats=stats)
    assert list(plain_parts) == ["ca"]
    np.testing.assert_array_equal(parts["overlong_turn_penalty"], [0.0, -0.5, -0.25])
    np.testing.assert_array_equal(rewards, plain + parts["overlong_turn_penalty"])


def test_composition_errors_name_what_to_change():
    agreed = np.array([True])
    with pytest.raises(ValueError, match="unknown reward component 'length_bonus'"):
        compose_rewards([1.0], agreed, fallback="zero", components={"length_bonus": 1.0})
    with pytest.raises(ValueError, match="overlong_turns"):
        compose_rewards([1.0], agreed, fallback="zero", components={"overlong_turn_penalty": 1.0})
    with pytest.raises(ValueError, match="booleans"):
        compose_rewards([1.0], [0.9], fallback="zero")
    with pytest.raises(ValueError, match="fallback"):
        compose_rewards([1.0], agreed, fallback="skip")


def test_reliability_matches_hand_computed_values():
    # Rounded half-up: [0, 1, 2] against [0, 2, 2]. By hand: exact 2/3, within one 3/3,
    # Pearson r = 2 / sqrt(2 * 8/3) = sqrt(3)/2, quadratic kappa = 1 - (1/12) / (15/36) = 0.8.
    a, b = [0.4, 1.0, 2.0], [0.0, 1.5, 2.2]
    stats = rel.reliability_stats(a, b)
    assert stats["n"] == 3
    assert stats["exact"] == pytest.approx(2 / 3) and stats["within_1"] == 1.0
    assert stats["weighted_kappa"] == pytest.approx(0.8)
    assert rel.pearson_r([0, 1, 2], [0, 2, 2]) == pytest.approx(math.sqrt(3) / 2)
    assert rel.quadratic_weighted_kappa([5, 3, 0], [5, 3, 0]) == 1.0
    assert rel.reliability_stats([1.0, np.nan, 3.0], [1.0, 2.0, np.nan])["n"] == 1


def test_reliability_command_prints_a_table(tmp_path, capsys):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps({"id": i, "score": s}) + "\n"
                             for i, s in [("x", 0), ("y", 1), ("z", 2), ("only_a", 4)]))
    second.write_text("".join(json.dumps({"id": i, "score": s}) + "\n"
                              for i, s in [("z", 2), ("y", 2), ("x", 0)]))
    assert rel.main([str(first), str(second)]) == 0
    table = capsys.readouterr().out
    assert "items scored by both        3" in table
    assert "items in only one file      1" in table
    assert "weighted kappa (quadratic)  0.800" in table
    assert "Pearson r                   0.866" in table
    second.write_text('{"id": "x"}\n')
    assert rel.main([str(first), str(second)]) == 1
    assert f"{second}:1:" in capsys.readouterr().err


@pytest.mark.parametrize("mode, prosocial, want", [
    # collective 0.8; seat utilities 0.3 and 0.7 (a third seat the game lacks: NaN)
    ("collective", 0.5, [0.8, 0.8, 0.8]),
    ("own", 0.5, [0.3, 0.7, 0.0]),
    ("mixed", 0.25, [0.25 * 0.8 + 0.75 * 0.3, 0.25 * 0.8 + 0.75 * 0.7, 0.25 * 0.8]),
])
def test_each_reward_mode_pays_each_seat_by_hand(mode, prosocial, want):
    from negojax.rewards import seat_rewards
    collective = np.array([[0.8, 0.5]])
    utilities = np.array([[[0.3, 0.7, np.nan], [0.5, 0.5, np.nan]]])
    valid = np.array([[True, False]])  # the second sample dropped: 0 in every seat
    paid = seat_rewards(collective, utilities, valid, mode=mode, prosocial=prosocial)
    np.testing.assert_allclose(paid[0, 0], want)
    np.testing.assert_array_equal(paid[0, 1], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="reward.mode: 'selfish' is not one of"):
        seat_rewards(collective, utilities, valid, mode="selfish", prosocial=0.5)

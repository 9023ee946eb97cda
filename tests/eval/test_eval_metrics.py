import numpy as np
import pytest

from negojax.eval.driver import win_rates
from negojax.eval.metrics import bootstrap_ci, conflict_metrics, pairwise_outcomes, win_rate


def dialogue(n_turns, agreed):
    return {
        "turns": [{"speaker": i % 2, "persona": "p", "text": "t", "num_tokens": 3} for i in range(n_turns)],
        "agreement_turn": n_turns - 1 if agreed else None,
    }


def test_conflict_metrics_match_hand_computed_values():
    transcripts = [dialogue(2, True), dialogue(3, True), dialogue(7, False), dialogue(1, True), dialogue(2, True)]
    m = conflict_metrics(transcripts, [4.0, 3.0, 1.0, 5.0, float("nan")], n_resamples=200)
    assert m["n"] == 5
    assert m["agreement_rate"] == pytest.approx(0.8)
    assert m["mean_rounds"] == pytest.approx(2.0)  # (2 + 3 + 1 + 2) / 4: the dialogue without agreement is left out
    assert m["n_ca_scored"] == 4  # the judge failed on the last one
    assert m["mean_ca_score"] == pytest.approx(3.25)  # every final solution is scored, agreed or not
    for key in ("agreement_rate", "mean_rounds", "mean_ca_score"):
        low, high = m[f"{key}_ci"]
        assert low <= m[key] <= high


def test_conflict_metrics_without_agreement_have_no_rounds():
    m = conflict_metrics([dialogue(7, False)], [0.5], n_resamples=50)
    assert m["agreement_rate"] == 0.0
    assert np.isnan(m["mean_rounds"]) and all(np.isnan(m["mean_rounds_ci"]))


def test_conflict_metrics_need_a_score_per_dialogue():
    with pytest.raises(ValueError, match="one CA score per dialogue"):
        conflict_metrics([dialogue(1, True)], [])


def test_bootstrap_ci_hand_computed():
    # Resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4.
    assert bootstrap_ci([0.0, 1.0], n_resamples=4000, confidence=0.95) == (0.0, 1.0)
    assert bootstrap_ci([0.0, 1.0], n_resamples=4000, confidence=0.4) == (0.5, 0.5)
    assert bootstrap_ci([2.5] * 10, n_resamples=100) == (2.5, 2.5)
    assert all(np.isnan(bootstrap_ci([], n_resamples=10)))


def test_bootstrap_ci_is_seeded_and_narrows_with_data():
    values = np.random.default_rng(1).normal(size=50)
    assert bootstrap_ci(values, seed=3, n_resamples=300) == bootstrap_ci(values, seed=3, n_resamples=300)
    assert bootstrap_ci(values, seed=3, n_resamples=300) != bootstrap_ci(values, seed=4, n_resamples=300)
    many = np.random.default_rng(1).normal(size=2000)
    narrow, wide = bootstrap_ci(many, n_resamples=300), bootstrap_ci(values, n_resamples=300)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_win_needs_both_orders_to_agree():
    p_a_first = [0.9, 0.8, 0.3, 0.6, 0.5, 0.2, 0.7]
    p_b_first = [0.2, 0.7, 0.9, 0.4, 0.3, 0.6, 0.1]
    #            win  tie  loss win  tie  loss win
    np.testing.assert_array_equal(pairwise_outcomes(p_a_first, p_b_first), [1, 0.5, 0, 1, 0.5, 0, 1])
    w = win_rate(p_a_first, p_b_first, n_resamples=200)
    assert (w["n"], w["wins"], w["losses"], w["ties"]) == (7, 3, 2, 2)
    assert w["strict_win_rate"] == pytest.approx(4 / 7)
    assert w["strict_win_rate_ci"][0] <= 4 / 7 <= w["strict_win_rate_ci"][1]
    # the orders averaged: (0.9 + 0.8) / 2, (0.8 + 0.3) / 2, ... over the 7 pairs
    averaged = [(a + 1 - b) / 2 for a, b in zip(p_a_first, p_b_first)]
    assert w["win_rate"] == pytest.approx(sum(averaged) / 7) == pytest.approx(3.9 / 7)
    assert w["win_rate_ci"][0] <= 3.9 / 7 <= w["win_rate_ci"][1]


def test_averaging_the_orders_cancels_a_position_bias_that_the_strict_rule_calls_a_tie():
    """A judge that prefers the first answer shown by 0.2 whatever it is, over a real edge of
    0.1 for A: requiring both orders to agree makes every pair a tie; averaging them keeps A's
    edge and drops the position."""
    p_a_first = [0.5 + 0.2 + 0.1] * 10  # A shown first: position + A's edge
    p_b_first = [0.5 + 0.2 - 0.1] * 10  # B shown first: position - A's edge
    w = win_rate(p_a_first, p_b_first, n_resamples=100)
    assert w["ties"] == 10 and w["strict_win_rate"] == 0.5
    assert w["win_rate"] == pytest.approx(0.6)


def test_win_rate_rejects_unpaired_judgements():
    with pytest.raises(ValueError, match="one judgement per item in each order"):
        win_rate([0.9, 0.1], [0.2])


def test_win_rates_driver_judges_both_orders():
    questions = ["q1", "q2", "q3"]
    a, b = ["a long answer", "short", "a much longer answer"], ["brief", "a longer one", "tiny"]

    def prefers_longer(qs, first, second):
        return np.array([1.0 if len(x) > len(y) else 0.0 for x, y in zip(first, second)])

    def always_first(qs, first, second):  # pure position bias: every item must come out a tie
        return np.ones(len(qs))

    w = win_rates(prefers_longer, questions, a, b, n_resamples=50)
    assert (w["wins"], w["losses"], w["ties"]) == (2, 1, 0)
    assert win_rates(always_first, questions, a, b, n_resamples=50)["ties"] == 3


def test_wilson_interval_has_width_at_0_and_1_and_matches_the_formula():
    from negojax.eval.metrics import interval, wilson_interval
    low, high = wilson_interval(0, 200)
    assert low == 0.0 and high == pytest.approx(1.959964 ** 2 / (200 + 1.959964 ** 2), rel=1e-5)
    assert wilson_interval(200, 200) == pytest.approx((1 - high, 1.0))
    # 30 of 100: centre and half-width by hand.
    z = 1.959964
    centre = (0.3 + z * z / 200) / (1 + z * z / 100)
    half = z * np.sqrt(0.3 * 0.7 / 100 + z * z / 40000) / (1 + z * z / 100)
    assert wilson_interval(30, 100) == pytest.approx((centre - half, centre + half))
    assert interval([1.0] * 10, rate=True) == wilson_interval(10, 10)  # a rate
    assert interval([1.0] * 10) == (1.0, 1.0)  # a measure that was 1 everywhere
    low, high = interval([0.2, 0.4, 0.9], rate=True)  # no 0/1 outcomes: the bootstrap
    assert 0.2 <= low < high <= 0.9


def test_a_pair_the_judge_failed_is_left_out_of_the_averaged_rate():
    w = win_rate([0.8, float("nan"), 0.6], [0.2, 0.5, float("nan")], n_resamples=50)
    assert w["n"] == 3 and w["n_judged"] == 1 and w["win_rate"] == pytest.approx(0.8)
    assert w["ties"] == 2  # the strict count calls a failed order a tie
    nothing = win_rate([float("nan")], [0.5], n_resamples=50)
    assert nothing["n_judged"] == 0 and np.isnan(nothing["win_rate"])

"""The reference policies of a resource split against a hand-computed game, and as the
environment measures them."""

import numpy as np
import pytest

from negojax.environments import ResourceSplit
from negojax.environments.reference_policies import (best_offer, even_split, keep_valued,
                                                     reference_allocations, take_all,
                                                     uniform_random)
from negojax.environments.resource_games import Game, allocations, value_vectors, welfare
from negojax.environments.resource_split import game_task

# 2 books, 1 hat, 3 balls. Alex: book 2, hat 0, ball 2 (4 + 6 = 10); Blair: 1, 2, 2 (2 + 2 + 6).
GAME = Game(counts=(2, 1, 3), values=((2, 0, 2), (1, 2, 2)))


def alloc(*rows):
    return np.asarray(rows, np.int64)


def test_each_policy_on_a_hand_computed_game():
    np.testing.assert_array_equal(take_all(GAME, 0), alloc([2, 1, 3], [0, 0, 0]))
    np.testing.assert_array_equal(take_all(GAME, 1), alloc([0, 0, 0], [2, 1, 3]))
    # 1 book each; the odd hat to Alex, then the odd ball to Blair (the next in turn).
    np.testing.assert_array_equal(even_split(GAME), alloc([1, 1, 1], [1, 0, 2]))
    # Alex keeps books and balls (valued), the hat (worth 0 to Alex) goes to Blair.
    np.testing.assert_array_equal(keep_valued(GAME), alloc([2, 0, 3], [0, 1, 0]))
    # Alex's points 2a + 2b, Blair's 10 - a - 2b with the hat: the product peaks at a=2, b=1.
    refs = reference_allocations(GAME, "nash")
    np.testing.assert_array_equal(refs["nash_optimal"][0], alloc([2, 0, 1], [0, 1, 2]))
    assert welfare(GAME, refs["sum_optimal"][0], "sum") == pytest.approx(1.0)
    assert len(refs["uniform_random"]) == 3 * 2 * 4  # every allocation of the pool


def test_the_best_offer_uses_seat_0s_values_alone_and_maximises_the_expected_welfare():
    other = Game(GAME.counts, (GAME.values[0], (0, 4, 2)))
    assert np.array_equal(best_offer(GAME, "nash"), best_offer(other, "nash"))
    # The definition, spelt out: each allocation's Nash welfare over each valuation Blair might
    # hold, normalised by that valuation's best, averaged.
    every = allocations(GAME.counts, 2)
    expected = []
    for a in every:
        scores = []
        for v in value_vectors(GAME.counts):
            game = Game(GAME.counts, (GAME.values[0], tuple(int(x) for x in v)))
            best = max(np.sqrt(np.prod(game.utilities(b))) for b in every)
            scores.append(np.sqrt(np.prod(game.utilities(a))) / best if best > 0 else 0.0)
        expected.append(np.mean(scores))
    np.testing.assert_array_equal(best_offer(GAME, "nash"), every[int(np.argmax(expected))])


def test_the_environment_measures_the_references_as_it_measures_a_deal():
    env = ResourceSplit(welfare_kind="nash")
    task = game_task(GAME, "eval", 0)
    refs = env.reference_metrics([task, task])
    assert set(refs) == {"take_all_seat0", "take_all_seat1", "even_split", "uniform_random",
                         "keep_valued_seat0", "best_offer_seat0", "nash_optimal", "sum_optimal"}
    even = {k: v[0] for k, v in refs["even_split"].items()}
    # Alex: 1 book + 1 ball = 4 points; Blair: 1 book + 2 balls = 5 points.
    assert even["utility_seat0"] == pytest.approx(0.4) and even["utility_seat1"] == 0.5
    assert even["agreement"] == 1.0 and even["one_sided"] == 0.0
    assert even["welfare_nash"] == pytest.approx(np.sqrt(4 * 5) / 6)  # the best is 6 x 6
    assert refs["take_all_seat0"]["one_sided"] == [1.0, 1.0]
    assert refs["take_all_seat0"]["welfare_nash"] == [0.0, 0.0]
    assert refs["nash_optimal"]["welfare"] == [pytest.approx(1.0)] * 2
    mean_sum = np.mean([welfare(GAME, a, "sum") for a in allocations(GAME.counts, 2)])
    assert refs["uniform_random"]["welfare_sum"][0] == pytest.approx(mean_sum)


def test_uniform_random_samples_the_pool_of_a_large_game_with_a_fixed_seed():
    big = Game((3, 3, 4), tuple(tuple(int(x) for x in v) for v in value_vectors((3, 3, 4))[:3]))
    drawn = uniform_random(big)
    assert len(drawn) == 256 and np.array_equal(drawn, uniform_random(big))
    assert len({a.tobytes() for a in drawn}) == 256
    assert all(np.array_equal(a.sum(0), big.counts) for a in drawn)

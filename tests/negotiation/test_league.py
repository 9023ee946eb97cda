"""The league (rollout.opponent=league): a snapshot joins every `refresh` steps, the oldest
leave past `pool_size`, and each step's member is drawn by prioritised fictitious self-play from
(seed, step) and the members' reward EMAs, which a restored league continues exactly."""
import numpy as np
import pytest

from negojax.negotiation import Opponents
from negojax.negotiation.seats import LEAGUE_EMA, LEAGUE_FLOOR, pfsp_weights


def test_pfsp_weights_favour_the_members_the_policy_does_worst_against():
    # By hand: x = (r - 0.2) / 0.8 over the drawn members = 0, 0.5, 1; never drawn: x = 0.
    x = np.array([0.0, 0.0, 0.5, 1.0])
    hand = ((1 - x) ** 2 + LEAGUE_FLOOR) / ((1 - x) ** 2 + LEAGUE_FLOOR).sum()
    weights = pfsp_weights([None, 0.2, 0.6, 1.0])
    np.testing.assert_allclose(weights, hand)
    np.testing.assert_allclose(weights, np.array([1.05, 1.05, 0.3, 0.05]) / 2.45)
    # Ties (and a league of one or of never-drawn members) draw uniformly.
    np.testing.assert_allclose(pfsp_weights([0.7, 0.7, None]), [1 / 3] * 3)
    np.testing.assert_allclose(pfsp_weights([None]), [1.0])


def _snapshots():
    """Stands for copies of the policy's params: 0, 1, 2, ... in the order they are taken."""
    values = iter(range(100))
    return lambda: next(values)


def _reward(member: int) -> float:
    """The policy does better against later snapshots (a reward to record per member)."""
    return 0.1 * member


def _play(league: Opponents, steps, take):
    picks = []
    for step in steps:
        picked = league.for_step(step, take)
        row = league.record(_reward(picked))
        assert league.snapshots[row["opponent_index"]] == picked
        assert row["league_size"] == len(league.snapshots)
        picks.append(picked)
    return picks


def test_league_snapshots_every_k_steps_caps_its_size_and_draws_by_pfsp():
    league, take = Opponents("league", refresh=2, pool_size=3, seed=5), _snapshots()
    members, rewards = [], []  # the league by hand
    for step in range(1, 12):
        if (step - 1) % 2 == 0:  # a snapshot joins on steps 1, 3, 5, ...; three are kept
            members, rewards = (members + [step // 2])[-3:], (rewards + [None])[-3:]
        p = pfsp_weights(rewards)
        index = np.random.default_rng([5, step, 7]).choice(len(members), p=p)
        assert league.for_step(step, take) == members[index]
        assert league.snapshots == members
        league.record(_reward(members[index]))
        old = rewards[index]
        rewards[index] = _reward(members[index]) if old is None else \
            (1 - LEAGUE_EMA) * old + LEAGUE_EMA * _reward(members[index])
        assert league.state() == {"rewards": rewards}
    assert league.snapshots == [3, 4, 5] and take() == 6  # six taken, on steps 1, 3, ..., 11

    # A step whose samples all dropped (NaN mean reward) leaves the statistics as they were.
    league.for_step(12, take)
    before = league.state()
    assert league.record(float("nan"))["league_size"] == 3 and league.state() == before


def test_league_draws_repeat_from_seed_and_step_and_continue_after_a_restore():
    def fresh():
        return Opponents("league", refresh=1, pool_size=2, seed=0), _snapshots()
    league, take = fresh()
    uninterrupted = _play(league, range(1, 9), take)
    again, take_again = fresh()
    assert _play(again, range(1, 9), take_again) == uninterrupted
    other = Opponents("league", refresh=1, pool_size=2, seed=1)
    assert _play(other, range(1, 9), _snapshots()) != uninterrupted

    first, take = fresh()
    _play(first, range(1, 5), take)
    resumed = Opponents("league", refresh=1, pool_size=2, seed=0)
    resumed.restore(list(first.snapshots), first.state())
    assert _play(resumed, range(5, 9), take) == uninterrupted[4:]
    assert resumed.state() == league.state()


def test_league_stats_absent_from_an_older_checkpoint_start_as_never_drawn():
    league = Opponents("league", refresh=1, pool_size=2, seed=0)
    league.restore([10, 11])  # a pool checkpoint's snapshots, no league statistics
    assert league.state() == {"rewards": [None, None]}
    assert league.for_step(2, _snapshots()) in (11, 0)


def test_only_the_model_mode_plays_an_external_seat():
    seat = object()
    assert Opponents("model", refresh=1, pool_size=1, seed=0, external=seat).for_step(
        3, _snapshots()) is seat
    with pytest.raises(ValueError, match="rollout.opponent: 'model' and only 'model'"):
        Opponents("model", refresh=1, pool_size=1, seed=0)
    with pytest.raises(ValueError, match="rollout.opponent: 'model' and only 'model'"):
        Opponents("league", refresh=1, pool_size=1, seed=0, external=seat)

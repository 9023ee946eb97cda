"""rl.credit against NumPy references written with loops: dialogue, seat and turn credit, the
shaped turn returns, and which groups carry signal."""
import itertools
import math

import numpy as np
import pytest

from negojax.negotiation.records import SequenceBuilder
from negojax.rl import METHODS
from negojax.rl.credit import (groups_with_signal, shaped_turn_rewards, token_advantages,
                               turn_returns)


def ref_group(values, method, keep, eps=1e-6):
    """One group's advantages, float64 loops (the method's definitions)."""
    out = [0.0] * len(values)
    kept = [i for i in range(len(values)) if keep[i]]
    if not kept:
        return out
    mean = sum(values[i] for i in kept) / len(kept)
    std = math.sqrt(sum((values[i] - mean) ** 2 for i in kept) / len(kept))
    for i in kept:
        others = [values[j] for j in kept if j != i]
        out[i] = {"grpo": (values[i] - mean) / (std + eps), "dr_grpo": values[i] - mean,
                  "rloo": values[i] - sum(others) / len(others) if others else values[i]}[method]
    return out


def sequence(p, g, seat, turns):
    """A sequence of (p, g) trained on 2 tokens of each of `turns`, with context between."""
    b = SequenceBuilder()
    b.context([1, 2])
    for t in turns:
        b.generated([3, 4], [-0.5, -0.5], seat, t)
        b.context([5])
    return b.build(p, g, seat)


def record(num_seats, num_turns, policy_seats):
    return {"personas": [f"P{i}" for i in range(num_seats)], "policy_seats": list(policy_seats),
            "turns": [{"speaker": t % num_seats, "text": ""} for t in range(num_turns)]}


def trained_values(adv, seq):
    return adv[np.asarray(seq.loss_mask, bool)]


def test_shaped_turn_rewards_telescope_to_the_outcome_wherever_the_dialogue_ends():
    phi = [0.2, 0.5, 0.4]
    shaped = shaped_turn_rewards(0.9, phi)
    np.testing.assert_allclose(shaped, [0.2, 0.3, -0.1, 0.9 - 0.4])
    # the return from turn t is the outcome less the potential of the state the turn began in
    np.testing.assert_allclose(turn_returns(0.9, phi), [0.9, 0.9 - 0.2, 0.9 - 0.5, 0.9 - 0.4])
    for n in range(4):  # ending after any number of turns: the shaping adds nothing in total
        assert shaped_turn_rewards(0.9, phi[:n]).sum() == pytest.approx(0.9)


@pytest.mark.parametrize("method", METHODS)
def test_dialogue_credit_gives_every_token_its_dialogues_advantage(method):
    rewards = np.array([[0.1, 0.7, 0.4, 0.4]])
    valid = np.array([[True, True, True, False]])
    seqs = [sequence(0, g, 0, [0, 2]) for g in range(4)]
    dialogues = [record(2, 3, (0,)) for _ in range(4)]
    got = token_advantages("dialogue", method, rewards, valid, seqs, dialogues)
    want = ref_group(list(rewards[0]), method, list(valid[0]))
    for g in range(4):
        np.testing.assert_allclose(trained_values(got[g], seqs[g]), want[g], atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_seat_credit_compares_a_seat_only_with_the_same_seat(method):
    # policy_seats=rotate over 2 seats: dialogues 0, 2, 4 train seat 0, dialogues 1, 3, 5 seat 1
    rewards = np.array([[0.9, 0.1, 0.7, 0.2, 0.8, 0.3]])
    valid = np.ones((1, 6), bool)
    seqs = [sequence(0, g, g % 2, [g % 2]) for g in range(6)]
    dialogues = [record(2, 2, (g % 2,)) for g in range(6)]
    got = token_advantages("seat", method, rewards, valid, seqs, dialogues)
    for seat in (0, 1):
        members = [g for g in range(6) if g % 2 == seat]
        want = ref_group([rewards[0, g] for g in members], method, [True] * 3)
        for g, w in zip(members, want):
            np.testing.assert_allclose(trained_values(got[g], seqs[g]), w, atol=1e-5)
    dialogue = token_advantages("dialogue", method, rewards, valid, seqs, dialogues)
    assert not np.allclose(trained_values(got[0], seqs[0]), trained_values(dialogue[0], seqs[0]))


@pytest.mark.parametrize("method", METHODS)
def test_seat_credit_reads_each_seats_own_reward(method):
    """reward.mode own or mixed: [P, G, seats]; self-play trains both seats of every dialogue,
    and each seat is compared with the same seat on that seat's own reward."""
    paid = np.array([[[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [1.0, 0.0]]])
    valid = np.ones((1, 4), bool)
    seqs = [sequence(0, g, seat, [seat]) for g in range(4) for seat in (0, 1)]
    dialogues = [record(2, 2, (0, 1)) for _ in range(4)]
    got = token_advantages("seat", method, paid, valid, seqs, dialogues)
    for seat in (0, 1):
        want = ref_group(list(paid[0, :, seat]), method, [True] * 4)
        for g in range(4):
            k = 2 * g + seat
            np.testing.assert_allclose(trained_values(got[k], seqs[k]), want[g], atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_turn_credit_against_loops(method):
    # one prompt, 4 dialogues of different lengths; the policy trains seat 0 (turns 0, 2, ...)
    # and dialogue 3 also its final solution (turn index = its turn count)
    rewards = np.array([[0.8, 0.2, 0.5, 0.6]])
    valid = np.array([[True, True, True, True]])
    turns = [3, 1, 3, 2]
    potentials = [[0.3, 0.1, 0.8], [0.0], [0.5, 0.5, 0.4], [0.6, 0.6]]
    trained = [[0, 2], [0], [0, 2], [0, 2]]  # dialogue 3: turn 0 and its final solution (2)
    seqs = [sequence(0, g, 0, trained[g]) for g in range(4)]
    dialogues = [record(2, turns[g], (0,)) for g in range(4)]
    got = token_advantages("turn", method, rewards, valid, seqs, dialogues, potentials)

    # reference: slot = turn index, the final solution in a slot after every dialogue's turns
    returns = {}
    for g in range(4):
        phi_before = [0.0] + potentials[g]
        for t in trained[g]:
            slot = "final" if t == turns[g] else t
            returns[g, slot] = rewards[0, g] - phi_before[t]
    for slot in {s for _, s in returns}:
        members = [g for g in range(4) if (g, slot) in returns]
        want = ref_group([returns[g, slot] for g in members], method, [True] * len(members))
        for g, w in zip(members, want):
            t = turns[g] if slot == "final" else slot
            mask = np.asarray(seqs[g].turn) == t
            np.testing.assert_allclose(got[g][mask], w, atol=1e-5)


def test_turn_credit_without_potentials_is_a_baseline_per_turn_index():
    rewards = np.array([[1.0, 0.0, 0.5]])
    seqs = [sequence(0, g, 0, [0]) for g in range(3)]
    dialogues = [record(2, 1, (0,)) for _ in range(3)]
    got = token_advantages("turn", "dr_grpo", rewards, np.ones((1, 3), bool), seqs, dialogues)
    np.testing.assert_allclose([trained_values(a, s)[0] for a, s in zip(got, seqs)],
                               [0.5, -0.5, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="potentials of dialogue 0: 2 values for its 1 turns"):
        token_advantages("turn", "grpo", rewards, np.ones((1, 3), bool), seqs, dialogues,
                         [[0.1, 0.2], [0.0], [0.0]])
    with pytest.raises(ValueError, match="rl.credit: 'token' is not one of dialogue, seat, turn"):
        token_advantages("token", "grpo", rewards, np.ones((1, 3), bool), seqs, dialogues)


def test_groups_with_signal_are_those_with_a_nonzero_trained_advantage():
    rewards = np.array([[0.5, 0.5], [0.1, 0.9]])
    seqs = [sequence(p, g, 0, [0]) for p in range(2) for g in range(2)]
    dialogues = [record(2, 1, (0,)) for _ in range(4)]
    adv = token_advantages("dialogue", "grpo", rewards, np.ones((2, 2), bool), seqs, dialogues)
    np.testing.assert_array_equal(groups_with_signal(adv, seqs, 2), [False, True])


# A toy negotiation whose policy gradient is known in closed form, with a policy that decides
# when to stop. Turn 0 (seat 0) stops the dialogue with probability 1 - p (outcome R_STOP) or
# goes on; turn 1 (seat 1) then makes a good deal with probability q (outcome 1) or a bad one
# (outcome 0). p = sigmoid(theta_0), q = sigmoid(theta_1); both seats are the policy's.
# J = (1 - p) R_STOP + p q, so dJ/dtheta_0 = p (1 - p) (q - R_STOP), dJ/dtheta_1 = p q (1 - q).
R_STOP, PHI_STOP, PHI_GO = 0.3, 0.3, 0.5  # the potentials after turn 0: what is on the table


def _toy_outcomes(p, q):
    """(probability, turns, outcome, potentials, d log-prob of each turn's action)."""
    return [(1 - p, 1, R_STOP, [PHI_STOP], [(-p, 0.0)]),
            (p * q, 2, 1.0, [PHI_GO, 1.0], [(1 - p, 0.0), (0.0, 1 - q)]),
            (p * (1 - q), 2, 0.0, [PHI_GO, 0.0], [(1 - p, 0.0), (0.0, -q)])]


def expected_turn_credit_gradient(method, p, q, G):
    """E[sum over a group's samples and trained turns of advantage x d log pi], exactly: every
    joint outcome of the G dialogues, weighted by its probability."""
    outcomes = _toy_outcomes(p, q)
    total = np.zeros(2)
    for joint in itertools.product(outcomes, repeat=G):
        weight = np.prod([o[0] for o in joint])
        rewards = np.array([[o[2] for o in joint]])
        seqs, grads = [], []
        for g, (_, turns, _, _, dlogp) in enumerate(joint):
            for t in range(turns):
                seqs.append(sequence(0, g, t % 2, [t]))
                grads.append(np.asarray(dlogp[t]))
        dialogues = [record(2, o[1], (0, 1)) for o in joint]
        adv = token_advantages("turn", method, rewards, np.ones((1, G), bool), seqs, dialogues,
                               [o[3] for o in joint])
        for a, s, grad in zip(adv, seqs, grads):
            total += weight * trained_values(a, s)[0] * grad
    return total


@pytest.mark.parametrize("p, q", [(0.3, 0.6), (0.8, 0.2)])
def test_turn_credit_with_rloo_is_an_unbiased_policy_gradient_when_the_policy_stops(p, q):
    """The slot of turn 1 holds only the dialogues that went on. Its leave-one-out baseline is
    the others' returns there, independent of the sample's own action, so the estimate is
    unbiased, provided a dialogue that reached turn 1 alone keeps its return (no baseline)
    rather than an advantage of 0, which dropped its term whenever no other dialogue went on."""
    true = np.array([p * (1 - p) * (q - R_STOP), p * q * (1 - q)])
    G = 3
    np.testing.assert_allclose(expected_turn_credit_gradient("rloo", p, q, G), G * true,
                               rtol=1e-5, atol=1e-7)


def test_turn_credit_normalised_by_a_mean_that_holds_the_sample_is_biased_when_it_stops():
    """dr_grpo's baseline holds the sample itself, scaling each turn's term by 1 - 1/n for the
    n dialogues that reached it: a number that depends on the stopping policy, so the estimate
    is not a multiple of the gradient (docs/seats_and_credit.md: use rloo with turn credit)."""
    p, q = 0.3, 0.6
    true = np.array([p * (1 - p) * (q - R_STOP), p * q * (1 - q)])
    got = expected_turn_credit_gradient("dr_grpo", p, q, 3)
    ratios = got / true
    assert abs(ratios[0] - ratios[1]) > 0.1

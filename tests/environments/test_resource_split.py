"""resource_split against hand-computed games: the proposal parser, the agreement rule,
utilities, both welfares, Pareto optimality and the disjoint seeded splits."""
import numpy as np
import pytest

from negojax.environments import ResourceSplit
from negojax.environments.resource_games import (Game, allocations, pareto_optimal, seatless,
                                                 split_games, welfare)
from negojax.environments.resource_split import (complete, deal, game_task, parse_proposal,
                                                 stances)
from negojax.negotiation.records import DialogueState, Turn

# 2 books, 1 hat, 1 ball. Alex: book 3, hat 4, ball 0 (2*3 + 4 = 10); Blair: book 1, hat 0, ball 8.
TWO = Game(counts=(2, 1, 1), values=((3, 4, 0), (1, 0, 8)))
# 1 of each. Alex: book 5 hat 5; Blair: hat 5 ball 5; Casey: book 5 ball 5.
THREE = Game(counts=(1, 1, 1), values=((5, 5, 0), (0, 5, 5), (5, 0, 5)))


def alloc(*rows):
    return np.asarray(rows, np.int64)


def test_parser_reads_named_shares_singular_and_plural():
    text = ("I think this is fair.\nPROPOSAL: Alex gets 2 books, 1 hat, 0 balls; "
            "Blair gets 0 books, 0 hats, 1 ball")
    np.testing.assert_array_equal(parse_proposal(text, TWO), alloc([2, 1, 0], [0, 0, 1]))


def test_parser_gives_the_one_unnamed_party_the_rest_and_unnamed_kinds_are_zero():
    np.testing.assert_array_equal(parse_proposal("proposal: Blair gets 1 ball", TWO),
                                  alloc([2, 1, 0], [0, 0, 1]))


def test_parser_reads_the_last_proposal_line():
    text = "PROPOSAL: Alex gets 2 books, 1 hat, 1 ball\nPROPOSAL: Alex gets 1 book; Blair gets 1 book, 1 hat, 1 ball"
    np.testing.assert_array_equal(parse_proposal(text, TWO), alloc([1, 0, 0], [1, 1, 1]))


@pytest.mark.parametrize("text", [
    "Let us share.",                                                   # no action line
    "PROPOSAL: Alex gets <n> books, <n> hats, <n> balls; Blair gets <n> books",  # template
    "PROPOSAL: Alex gets 3 books; Blair gets 0 books, 1 hat, 1 ball",  # more books than the pool
    "PROPOSAL: Alex gets 1 book, 1 hat; Blair gets 0 books, 0 hats, 1 ball",  # a book left over
    "PROPOSAL: Alex gets 1 book, 2 books; Blair gets 1 hat",           # a kind given twice
    "PROPOSAL: Alex gets 1 book; Alex gets 1 book",                    # a party named twice
    "PROPOSAL: we split it evenly",                                    # no party named
])
def test_parser_rejects(text):
    assert parse_proposal(text, TWO) is None


def test_a_message_cut_off_at_the_token_cap_loses_its_unfinished_last_line():
    full = "PROPOSAL: Alex gets 2 books, 1 hat, 1 ball; Blair gets 0 books, 0 hats, 0 balls"
    cut = f"{full}\nPROPOSAL: Alex gets 2 books, 1 hat, 1"  # the cap struck mid-line
    # Read whole, the cut line would give Blair the ball; only the finished line counts.
    np.testing.assert_array_equal(parse_proposal(complete(cut, True), TWO),
                                  alloc([2, 1, 1], [0, 0, 0]))
    assert parse_proposal(complete(full, True), TWO) is None
    assert complete(full, False) == full
    env = ResourceSplit()
    task = game_task(TWO, "eval", 0)
    record = {"turns": [{"speaker": 0, "text": cut, "hit_token_cap": True},
                        {"speaker": 1, "text": "PROPOSAL: Alex gets 2 books, 1 hat; Blair gets 1 ball",
                         "hit_token_cap": False}]}
    assert env.metrics([task], [record])["agreement"] == [0.0]


def test_three_parties_need_two_named_and_the_third_takes_the_rest():
    np.testing.assert_array_equal(
        parse_proposal("PROPOSAL: Alex gets 1 book; Blair gets 1 hat", THREE),
        alloc([1, 0, 0], [0, 1, 0], [0, 0, 1]))
    assert parse_proposal("PROPOSAL: Alex gets 1 book", THREE) is None  # two parties unnamed


def test_accept_takes_the_latest_proposal_of_another_party():
    p1 = "PROPOSAL: Alex gets 2 books, 1 hat; Blair gets 1 ball"
    p2 = "PROPOSAL: Alex gets 2 books; Blair gets 1 hat, 1 ball"
    got = stances(TWO, [(0, p1), (1, p2), (0, "Fine. ACCEPT")])
    np.testing.assert_array_equal(got[2], parse_proposal(p2, TWO))
    assert stances(TWO, [(0, "ACCEPT")]) == [None]  # nothing to accept yet
    assert stances(TWO, [(0, p1), (0, "ACCEPT")])[1] is None  # one's own proposal is not another's


def test_agreement_rule():
    p1 = "PROPOSAL: Alex gets 2 books, 1 hat; Blair gets 1 ball"
    same = "Agreed. PROPOSAL: Blair gets 1 ball; Alex gets 2 books, 1 hat"
    other = "PROPOSAL: Alex gets 1 book; Blair gets 1 book, 1 hat, 1 ball"
    np.testing.assert_array_equal(deal(TWO, [(0, p1), (1, "ACCEPT")]), parse_proposal(p1, TWO))
    np.testing.assert_array_equal(deal(TWO, [(0, p1), (1, same)]), parse_proposal(p1, TWO))
    assert deal(TWO, [(0, p1)]) is None                       # Blair has not spoken
    assert deal(TWO, [(0, p1), (1, other)]) is None           # proposals differ
    assert deal(TWO, [(0, p1), (1, "ACCEPT"), (0, other)]) is None  # Alex moved on
    assert deal(TWO, [(0, p1), (1, "I am not sure.")]) is None
    # Three parties: all three must stand on one allocation.
    p3 = "PROPOSAL: Alex gets 1 book; Blair gets 1 hat"
    assert deal(THREE, [(0, p3), (1, "ACCEPT")]) is None
    assert deal(THREE, [(0, p3), (1, "ACCEPT"), (2, "ACCEPT")]) is not None


def test_allocations_are_every_division_of_the_pool():
    # Per kind, 2 books give 3 splits between 2 parties, 1 hat 2 and 1 ball 2: 12 in all.
    every = allocations(TWO.counts, 2)
    assert every.shape == (12, 2, 3)
    assert np.all(every.sum(1) == TWO.counts)
    assert len({a.tobytes() for a in every}) == 12
    assert allocations((1, 1, 1), 4).shape == (64, 4, 3)


def test_utilities_welfares_and_pareto_by_hand():
    # Alex 2 books + hat = 10 points, Blair the ball = 8: the best deal for both sums (18).
    best = alloc([2, 1, 0], [0, 0, 1])
    np.testing.assert_array_equal(TWO.utilities(best), [10, 8])
    assert welfare(TWO, best, "sum") == pytest.approx(1.0)
    assert welfare(TWO, best, "nash") == pytest.approx(1.0)  # 80 is the largest product
    assert pareto_optimal(TWO, best)
    # Blair takes a book too: Alex 3 + 4 = 7, Blair 1 + 8 = 9. Sum 16 / 18; Nash sqrt(63 / 80).
    middle = alloc([1, 1, 0], [1, 0, 1])
    assert welfare(TWO, middle, "sum") == pytest.approx(16 / 18)
    assert welfare(TWO, middle, "nash") == pytest.approx(np.sqrt(63 / 80))
    assert pareto_optimal(TWO, middle)  # Alex loses if the book moves back
    # Alex takes everything: 10 and 0. Sum 10 / 18, Nash 0; the ball is wasted on Alex.
    greedy = alloc([2, 1, 1], [0, 0, 0])
    assert welfare(TWO, greedy, "sum") == pytest.approx(10 / 18)
    assert welfare(TWO, greedy, "nash") == 0.0
    assert not pareto_optimal(TWO, greedy)
    # Three parties, one item each to whoever values it: 5 + 5 + 5, the best for either welfare.
    fair = alloc([1, 0, 0], [0, 1, 0], [0, 0, 1])
    assert welfare(THREE, fair, "sum") == pytest.approx(1.0)
    assert welfare(THREE, fair, "nash") == pytest.approx(1.0)
    assert pareto_optimal(THREE, fair)
    # Alex takes book and hat (10), Casey the ball (5), Blair nothing: sum 15 / 15, Nash 0.
    unfair = alloc([1, 1, 0], [0, 0, 0], [0, 0, 1])
    assert welfare(THREE, unfair, "sum") == pytest.approx(1.0)
    assert welfare(THREE, unfair, "nash") == 0.0
    assert pareto_optimal(THREE, unfair)


def test_outcome_and_score_of_dialogues():
    env = ResourceSplit(welfare_kind="nash")
    task = game_task(TWO, "eval", 0)
    agreed = {"turns": [{"speaker": 0, "text": "PROPOSAL: Alex gets 1 book, 1 hat; Blair gets 1 book, 1 ball"},
                        {"speaker": 1, "text": "ACCEPT"}]}
    none = {"turns": [{"speaker": 0, "text": "hello"}, {"speaker": 1, "text": "ACCEPT"}]}
    out = env.metrics([task, task], [agreed, none])
    assert out["agreement"] == [1.0, 0.0]
    assert out["welfare"] == pytest.approx([np.sqrt(63 / 80), 0.0])
    assert out["welfare_sum"] == pytest.approx([16 / 18, 0.0])
    assert out["pareto_optimal"][0] == 1.0 and np.isnan(out["pareto_optimal"][1])
    assert out["utility_seat0"] == pytest.approx([0.7, 0.0])
    assert out["utility_seat1"] == pytest.approx([0.9, 0.0])
    assert "utility_seat2" not in out  # 2-party games only
    three = ResourceSplit(parties=(2, 3)).metrics([task], [agreed])
    assert np.isnan(three["utility_seat2"][0])
    assert out["unparsable_rate"] == [0.0, 1.0]  # an ACCEPT of nothing is unreadable too

    class Rollout:
        dialogues = [agreed, none]
    scores, failures = env.score(None, [task], Rollout, 2)
    np.testing.assert_allclose(scores, [[np.sqrt(63 / 80), 0.0]])
    assert failures == [None, None]


def test_potentials_are_the_welfare_of_the_proposal_on_the_table():
    task = game_task(TWO, "train", 0)
    dialogue = {"turns": [
        {"speaker": 0, "text": "Let us talk."},                                    # nothing yet
        {"speaker": 1, "text": "PROPOSAL: Alex gets 2 books, 1 hat, 1 ball"},     # greedy
        {"speaker": 0, "text": "ACCEPT"},                                          # table stays
        {"speaker": 1, "text": "PROPOSAL: Alex gets 1 book, 1 hat; Blair gets 1 book, 1 ball"},
        {"speaker": 0, "text": "PROPOSAL: Alex gets 2 books, 1 hat", "hit_token_cap": True}]}
    # the last message was cut off at the cap: its unfinished line does not reach the table
    assert ResourceSplit(welfare_kind="sum").potentials([task], [dialogue]) == [
        pytest.approx([0.0, 10 / 18, 10 / 18, 16 / 18, 16 / 18])]
    assert ResourceSplit(welfare_kind="nash").potentials([task], [dialogue])[0][1] == 0.0


def test_agreement_check_reads_dialogue_states():
    env = ResourceSplit()
    task = game_task(TWO, "train", 0)
    state = DialogueState(task, 0, 0, 0)
    check = env.agreement(None, None)

    def turn(speaker, text):
        return Turn(speaker, text, [], np.zeros(0), False)
    state.turns.append(turn(0, "PROPOSAL: Alex gets 2 books, 1 hat; Blair gets 1 ball"))
    assert not check([state])[0]
    state.turns.append(turn(1, "ACCEPT"))
    assert check([state])[0]


def test_splits_are_seeded_disjoint_and_independent_of_the_train_size():
    a = split_games(3, (2, 3, 4), {"eval": 50, "train": 200})
    b = split_games(3, (2, 3, 4), {"eval": 50, "train": 20})
    assert a["eval"] == b["eval"] and a["train"][:20] == b["train"]
    assert not set(a["eval"]) & set(a["train"])
    assert len(set(a["train"])) == 200
    assert [g.parties for g in a["train"][:6]] == [2, 3, 4, 2, 3, 4]
    for game in a["train"]:
        assert all(np.dot(game.counts, v) == 10 for v in game.values)
        assert all(1 <= c <= 4 for c in game.counts) and len(set(game.values)) > 1
    sizes = {"eval": 5, "train": 5}
    assert split_games(4, (2,), sizes)["eval"] != split_games(3, (2,), sizes)["eval"]


def test_no_eval_game_is_a_training_game_with_its_seats_permuted():
    """A policy that plays every seat has seen a game whose seats were only swapped: 107 of
    resource_split's 200 eval games were such training games."""
    games = split_games(0, (2, 3), {"eval": 200, "train": 4000})
    held_out = {seatless(g) for g in games["eval"]}
    assert not any(seatless(g) in held_out for g in games["train"])
    assert len(games["train"]) == 4000
    swapped = Game(TWO.counts, TWO.values[::-1])
    assert seatless(swapped) == seatless(TWO) and swapped != TWO


def test_tasks_carry_their_game_and_prompts_keep_values_private():
    env = ResourceSplit(parties=(3,), train_tasks=10, eval_tasks=5)
    task = env.tasks("eval")[0]
    assert len(env.tasks("train")) == 10 and len(task.personas) == 3
    prompts = [env.system_prompt(task, seat) for seat in range(3)]
    values = task.details["values"]
    for seat, prompt in enumerate(prompts):
        own = ", ".join(f"{kind} {v}" for kind, v in zip(("book", "hat", "ball"), values[seat]))
        assert own in prompt
        assert "PROPOSAL:" in prompt and "ACCEPT" in prompt
    assert len(set(prompts)) == 3
    with pytest.raises(ValueError, match="env.parties"):
        ResourceSplit(parties=(5,))
    with pytest.raises(ValueError, match="env.welfare"):
        ResourceSplit(welfare_kind="max")

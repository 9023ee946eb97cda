"""`judge.ensemble`: several judges as one. The votes against hand-computed values, and an
ensemble of three real HTTP judges (127.0.0.1) whose calls and failures add up."""
import math

import numpy as np
import pytest

from negojax.rewards import AGREEMENT, CA_SCORE, HttpJudge, JudgeEnsemble
from negojax.rewards.ensemble import combine
from openai_server import Reply, start_server, stop_server

NAN = math.nan


def test_mean_vote_averages_the_members_that_answered():
    values = np.array([[1.0, 4.0, NAN, NAN],
                       [2.0, 5.0, 3.0, NAN],
                       [3.0, 0.0, 5.0, NAN]])
    np.testing.assert_allclose(combine(CA_SCORE, values, "mean"), [2.0, 3.0, 4.0, NAN])
    np.testing.assert_allclose(combine(AGREEMENT, values[:, :3] / 5, "mean"),
                               [0.4, 0.6, 0.8])


def test_majority_vote_counts_verdicts_and_a_tie_is_one_half():
    values = np.array([[0.9, 0.1, 0.9, 0.5, NAN, 0.2],
                       [0.6, 0.4, 0.1, 0.5, NAN, NAN],
                       [0.2, 0.3, 0.5, 0.7, NAN, NAN]])
    # yes-yes-no; no-no-no; yes-no-abstain (tie); abstain-abstain-yes; nobody; one no.
    np.testing.assert_allclose(combine(AGREEMENT, values, "majority"),
                               [1.0, 0.0, 0.5, 1.0, NAN, 0.0])
    # CA scores are averaged whatever the vote.
    np.testing.assert_allclose(combine(CA_SCORE, values, "majority"),
                               [1.7 / 3, 0.8 / 3, 1.5 / 3, 1.7 / 3, NAN, 0.2])


@pytest.fixture
def three_judges():
    replies = [("yes", "1", "A"), ("yes", "2", "B"), ("no", "5", None)]

    def behaviour(agreement, score, letter):
        def reply(index, body):
            text = body["messages"][-1]["content"]
            if text.endswith("yes or no."):
                return Reply(agreement)
            if text.endswith("A or B."):
                return Reply(letter) if letter else Reply(status=500)
            return Reply(score)
        return reply
    servers = [start_server(behaviour(*r)) for r in replies]
    yield [HttpJudge(s.url, "judge", max_retries=0, backoff_base_s=0.01) for s in servers]
    for server in servers:
        stop_server(server)


def test_an_ensemble_of_http_judges_votes_and_sums_its_members_counts(three_judges):
    personas = [[{"name": n, "core_value": "v", "wants": "w", "fears": "f", "style": "s"}
                 for n in ("Ann", "Bo")]] * 2
    mean = JudgeEnsemble(three_judges, vote="mean")
    np.testing.assert_allclose(mean.ca_score(["d1", "d2"], personas, ["s1", "s2"]), [8 / 3] * 2)
    np.testing.assert_allclose(
        mean.agreement(["d1", "d2"], personas, [[("Ann", "ok")]] * 2), [2 / 3] * 2)
    majority = JudgeEnsemble(three_judges, vote="majority")
    np.testing.assert_allclose(
        majority.agreement(["d1", "d2"], personas, [[("Ann", "ok")]] * 2), [1.0, 1.0])
    # The third judge fails every preference: A against B is a tie, not a failure.
    np.testing.assert_allclose(majority.prefer(["q"], ["a"], ["b"]), [0.5])
    # Both ensembles share the members, so the counts are those of all four batches.
    counts = majority.counts()
    assert counts["calls"] == 3 * (2 + 2 + 2 + 1) and counts["http_500"] == 1
    assert majority.last_failures == [None]


def test_an_ensemble_needs_two_members_and_a_known_vote(three_judges):
    with pytest.raises(ValueError, match="2 or more members"):
        JudgeEnsemble(three_judges[:1])
    with pytest.raises(ValueError, match="vote must be one of"):
        JudgeEnsemble(three_judges, vote="median")

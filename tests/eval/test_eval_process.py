"""Process metrics on hand-made dialogues whose movement, outcome and named values are known."""
import numpy as np
import pytest

from negojax.data.records import Persona
from negojax.eval.metrics import bootstrap_ci
from negojax.eval.process import dialogue_process, named_share, process_metrics, similarity
from negojax.rewards import HttpJudge
from openai_server import Reply, start_server, stop_server

PERSONAS = (
    Persona("Cost Minimiser", "Spending only what is necessary so resources last.", id="cost"),
    Persona("Safety Advocate", "Protecting people from preventable harm.", id="safety"),
)
# Every word below is its own content stem but "trams" (tram), "reliable" (reliabl) and "quality"
# (qualiti), so the NumPy reference counts the words themselves.
CHEAP = "cheap trams extend line"
PROVEN = "proven reliable trams quality"
MIXED_0 = "cheap reliable trams extend quality"
MIXED_1 = "proven reliable trams cheap line"
STEMS = {"trams": "tram", "reliable": "reliabl", "quality": "qualiti"}


def cosine(a, b):
    """NumPy reference: cosine of word-count vectors over the two texts' vocabulary."""
    a, b = [STEMS.get(w, w) for w in a.split()], [STEMS.get(w, w) for w in b.split()]
    vocab = sorted(set(a) | set(b))
    va = np.array([a.count(w) for w in vocab], float)
    vb = np.array([b.count(w) for w in vocab], float)
    return float(va @ vb / np.linalg.norm(va) / np.linalg.norm(vb))


def record(texts, agreed=True, solution="A plan."):
    return {"scenario_id": "s", "personas": [p.name for p in PERSONAS],
            "turns": [{"speaker": k % 2, "persona": PERSONAS[k % 2].name, "text": t} for k, t in enumerate(texts)],
            "agreement_turn": len(texts) if agreed else None, "final_solution": solution}


CAPITULATING = record([CHEAP, PROVEN, PROVEN, PROVEN])  # seat 0 takes seat 1's opening wholesale
CONVERGING = record([CHEAP, PROVEN, MIXED_0, MIXED_1])  # both take half of the other's position
STATIC = record([CHEAP, PROVEN, CHEAP, PROVEN], agreed=False)  # nobody moves, no agreement


def test_similarity_is_the_cosine_of_stem_counts():
    for a, b in ((CHEAP, PROVEN), (MIXED_0, CHEAP), (MIXED_1, PROVEN), (CHEAP, CHEAP)):
        assert similarity(a, b) == pytest.approx(cosine(a, b))
    assert similarity("The trams, the trams!", "TRAMS") == pytest.approx(1.0)  # case and stopwords
    assert similarity("", CHEAP) == 0.0 and similarity(None, CHEAP) == 0.0


def test_a_seat_adopting_the_others_opening_capitulates():
    d = dialogue_process(CAPITULATING, PERSONAS)
    assert d["outcome"] == "capitulation" and d["rounds"] == 4 and d["agreed"]
    np.testing.assert_allclose(d["movement"], [[0.0, 1 - cosine(PROVEN, CHEAP)], [0.0, 0.0]])
    np.testing.assert_allclose(d["final_drift"], [0.75, 0.0])


def test_both_seats_moving_toward_each_other_converge():
    d = dialogue_process(CONVERGING, PERSONAS)
    assert d["outcome"] == "convergence"
    np.testing.assert_allclose(d["movement"], [[0.0, 1 - cosine(MIXED_0, CHEAP)], [0.0, 1 - cosine(MIXED_1, PROVEN)]])
    opening = cosine(CHEAP, PROVEN)
    np.testing.assert_allclose(d["gain_toward_others"],
                               [cosine(MIXED_0, PROVEN) - opening, cosine(MIXED_1, CHEAP) - opening])


def test_seats_that_repeat_themselves_neither_capitulate_nor_converge():
    d = dialogue_process(STATIC, PERSONAS)
    assert d["outcome"] == "neither" and d["rounds"] is None and not d["agreed"]
    np.testing.assert_allclose(d["movement"], [[0.0, 0.0], [0.0, 0.0]])
    # Seats that swap positions moved, but neither capitulated (both moved) nor converged (as far apart).
    both_swap = dialogue_process(record([CHEAP, PROVEN, PROVEN, CHEAP]), PERSONAS)
    assert both_swap["outcome"] == "neither"


def test_final_solution_naming_one_of_two_core_values():
    solution = "We protect the people most at risk and prevent harm; the Cost Minimiser's worry is noted."
    d = dialogue_process(record([CHEAP, PROVEN], solution=solution), PERSONAS)
    assert d["core_value_named"] == [False, True]
    assert d["core_value_share"] == [0.0, 1.0]
    assert d["name_named"] == [True, False]
    # Stem-tolerant: "loyal" names "loyalty", "families" names "family"; case does not matter.
    assert named_share("Loyalty to family", "She stays LOYAL to the families.") == 1.0
    assert named_share("Loyalty to family", "She stays with friends.") == 0.0


def test_aggregates_are_means_with_bootstrap_intervals():
    records = [CAPITULATING, CONVERGING, STATIC]
    result = process_metrics(records, [PERSONAS] * 3, n_resamples=200, seed=3)
    assert result["n"] == 3
    capitulated = [1.0, 0.0, 0.0]
    assert result["capitulation"]["mean"] == pytest.approx(np.mean(capitulated))
    assert result["capitulation"]["ci"] == list(bootstrap_ci(capitulated, n_resamples=200, seed=3))
    assert result["convergence"]["mean"] == pytest.approx(1 / 3)
    assert result["neither"]["mean"] == pytest.approx(1 / 3)
    assert result["rounds"]["mean"] == 4.0 and result["rounds"]["n"] == 2  # agreed dialogues only
    moved = [[dialogue_process(r, PERSONAS)["movement"][s][1] for r in records] for s in (0, 1)]
    np.testing.assert_allclose(result["movement_by_turn"], [[0.0, np.mean(moved[0])], [0.0, np.mean(moved[1])]])
    assert result["core_value_named"]["n"] == 6 and len(result["dialogues"]) == 3
    with pytest.raises(ValueError, match="one persona tuple per dialogue"):
        process_metrics(records, [PERSONAS])


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    srv = start_server()
    yield srv
    stop_server(srv)


def same_statement_judge(index, body):
    """A judge that says two statements agree exactly when their texts are the same."""
    turns = body["messages"][-1]["content"].split("negotiation:\n")[1].split("\n\nDo the parties")[0]
    first, second = (turn.split(": ", 1)[1] for turn in turns.split("\n\n"))
    return Reply("yes" if first == second else "no")


def test_judge_scored_movement_asks_the_judge_once_per_pair(server):
    server.behaviour = same_statement_judge
    judge = HttpJudge(server.url, "judge-model", timeout_s=10.0, max_retries=0)
    result = process_metrics([CAPITULATING], [PERSONAS], similarity_kind="judge", judge=judge, n_resamples=50)
    (d,) = result["dialogues"]
    assert result["similarity"] == "judge" and d["outcome"] == "capitulation"
    np.testing.assert_allclose(d["movement"], [[0.0, 1.0], [0.0, 0.0]])  # the judge's 0/1, not the words
    # Each seat's second turn against its opening, both seats' last turn and opening against the
    # other's opening, and the two last turns: 7 pairs, one batched request each.
    assert len(server.requests) == 7
    asked = [body["messages"][-1]["content"] for body in server.requests]  # concurrent: any order
    assert any(f"Cost Minimiser, its turn 2: {PROVEN}\n\nCost Minimiser, its turn 1: {CHEAP}" in a for a in asked)


def test_a_failed_judge_call_leaves_the_movement_missing(server):
    server.behaviour = lambda index, body: Reply(status=400)
    judge = HttpJudge(server.url, "judge-model", timeout_s=10.0, max_retries=0)
    result = process_metrics([CONVERGING], [PERSONAS], similarity_kind="judge", judge=judge, n_resamples=50)
    assert np.isnan(result["dialogues"][0]["movement"][0][1]) and result["final_drift"]["n"] == 0
    assert result["neither"]["mean"] == 1.0  # no similarity, no claim of capitulation or convergence
    with pytest.raises(ValueError, match="need a judge"):
        process_metrics([CONVERGING], [PERSONAS], similarity_kind="judge")
    with pytest.raises(ValueError, match="must be one of"):
        process_metrics([CONVERGING], [PERSONAS], similarity_kind="embedding")

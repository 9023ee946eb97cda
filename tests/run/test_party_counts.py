"""Training, evaluation and the report break agreement and reward down by party count, so a run
over 2- to 4-party tasks shows where the larger groups stand."""
import numpy as np

from negojax.data.records import Persona, Task
from negojax.eval.report import party_table
from negojax.run.evaluate import party_rows
from negojax.run.train import by_party_count


def task(parties: int) -> Task:
    return Task(id=f"t{parties}", split="eval", tier="everyday", dilemma="Decide.", group="",
                personas=tuple(Persona(name=f"P{k}", core_value="v") for k in range(parties)))


def test_train_rows_have_agreement_and_reward_per_party_count():
    tasks = [task(2), task(4), task(2)]
    agreed = np.array([[True, False], [False, False], [True, True]])
    rewards = np.array([[3.0, 0.0], [0.0, 9.0], [1.0, 2.0]])
    valid = np.array([[True, True], [True, False], [True, True]])
    assert by_party_count(tasks, agreed, rewards, valid) == {
        "agreement_rate_2p": 0.75, "reward_mean_2p": 1.5,
        "agreement_rate_4p": 0.0, "reward_mean_4p": 0.0}  # the dropped 4-party sample is out
    only = by_party_count([task(3)], agreed[:1], gather=np.asarray)
    assert only == {"agreement_rate_3p": 0.5}


def test_eval_groups_tasks_by_party_count_and_the_report_shows_them_apart():
    assert party_rows([task(3), task(2), task(4), task(2)]) == {"2": [1, 3], "3": [0], "4": [2]}
    metrics = {"n": 2, "agreement_rate": 0.5, "agreement_rate_ci": [0.0, 1.0],
               "mean_rounds": 3.0, "mean_ca_score": 2.0}
    results = {"conflict_by_parties": {"A": {"greedy": {"2": metrics, "4": {**metrics, "n": 1}}}}}
    header, rows = party_table(results, {"A": "trained"})
    assert header[:4] == ["model", "decoding", "parties", "n"] and "agreement_rate" in header
    assert [row[:4] for row in rows] == [["trained", "greedy", "2", "2"],
                                         ["trained", "greedy", "4", "1"]]
    assert rows[0][4] == "0.500 [0.000, 1.000]"
    outcomes = {"environment": {"by_parties": {"A-B": {"greedy": {
        "2": {"n": 3, "welfare": 0.1, "welfare_ci": [0.0, 0.2]}, "3": {"n": 1, "welfare": 0.0}}}}}}
    header, rows = party_table(outcomes, {})
    assert header == ["model", "decoding", "parties", "n", "welfare"]
    assert rows[1] == ["A - B (paired over the same tasks)", "greedy", "3", "1", "0.000"]
    # One party count: the overall tables already say it all.
    assert party_table({"conflict_by_parties": {"A": {"greedy": {"2": metrics}}}}, {})[1] == []

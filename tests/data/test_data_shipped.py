"""The shipped scenario files load through TFDS with the sizes the method's evaluation needs."""
import json

import pytest

from negojax.data import load_tasks
from negojax.data.scenarios import RESOURCES_DIR


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def test_eval_opens_with_the_100_two_party_conflict_tasks_then_one_per_persona_set(data_dir):
    tasks = load_tasks("eval", data_dir=data_dir)
    assert len({t.id for t in tasks}) == len(tasks) == 112
    # eval.num_tasks=100 keeps the method's evaluation: the two-party tasks come first.
    assert all(len(t.personas) == 2 for t in tasks[:100])
    multi = tasks[100:]
    assert sorted(len(t.personas) for t in multi) == [3] * 3 + [4] * 9
    sets = [json.loads(line)["id"] for line in (RESOURCES_DIR / "persona_sets.jsonl").open()]
    assert [t.group for t in multi] == sets


def test_open_ended_has_exactly_100_questions(data_dir):
    tasks = load_tasks("open_ended", data_dir=data_dir)
    assert len(tasks) == 100
    assert all(t.tier == "open_ended" and t.personas == () and t.dilemma for t in tasks)


def test_train_dilemmas_are_disjoint_from_eval(data_dir):
    train = load_tasks("train", data_dir=data_dir)
    evaluation = load_tasks("eval", data_dir=data_dir)
    assert len(train) >= 330  # >= 300 two-party plus >= 30 multi-party
    assert not {t.dilemma for t in train} & {t.dilemma for t in evaluation}
    assert not {t.id for t in train} & {t.id for t in evaluation}
    for n in (3, 4):  # new dilemmas for the training persona sets, as the pairs have theirs
        held_out = [t for t in evaluation if len(t.personas) == n]
        assert held_out and all(t.group in {u.group for u in train} for t in held_out)

"""The shipped scenario files load through TFDS with the sizes the method's evaluation needs."""
import pytest

from negojax.data import load_tasks


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def test_eval_has_exactly_100_two_party_conflict_tasks(data_dir):
    tasks = load_tasks("eval", data_dir=data_dir)
    assert len(tasks) == 100
    assert all(len(t.personas) == 2 for t in tasks)
    assert len({t.id for t in tasks}) == 100


def test_open_ended_has_exactly_100_questions(data_dir):
    tasks = load_tasks("open_ended", data_dir=data_dir)
    assert len(tasks) == 100
    assert all(t.tier == "open_ended" and t.personas == () and t.dilemma for t in tasks)


def test_train_dilemmas_are_disjoint_from_eval(data_dir):
    train = load_tasks("train", data_dir=data_dir)
    evaluation = load_tasks("eval", data_dir=data_dir)
    assert len(train) >= 330  # >= 300 two-party plus >= 30 multi-party
    assert not {t.dilemma for t in train} & {t.dilemma for t in evaluation}

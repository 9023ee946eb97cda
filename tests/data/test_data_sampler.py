"""TaskSampler: deterministic, disjoint per-host shards, exact resume from state()."""
import json

import pytest

from negojax.data import Task, TaskSampler


def make_tasks(n):
    return [Task(id=f"t{i:03d}", split="train", tier="everyday", dilemma=f"dilemma {i}", personas=(),
                 group="g") for i in range(n)]


def ids(batch):
    return [t.id for t in batch]


def test_same_seed_same_stream_other_seed_other_order():
    tasks = make_tasks(30)
    a, b, c = TaskSampler(tasks, seed=3), TaskSampler(tasks, seed=3), TaskSampler(tasks, seed=4)
    stream_a = [ids(a.next_batch(7)) for _ in range(10)]
    assert stream_a == [ids(b.next_batch(7)) for _ in range(10)]
    assert stream_a != [ids(c.next_batch(7)) for _ in range(10)]


def test_each_epoch_visits_every_task_once_in_a_new_order():
    tasks = make_tasks(20)
    sampler = TaskSampler(tasks, seed=0)
    epoch0, epoch1 = ids(sampler.next_batch(20)), ids(sampler.next_batch(20))
    assert sorted(epoch0) == sorted(epoch1) == ids(tasks)
    assert epoch0 != epoch1
    assert sampler.epoch == 1


def test_host_shards_are_disjoint_equal_and_cover_the_data():
    tasks = make_tasks(24)
    shards = [ids(TaskSampler(tasks, seed=1, process_index=p, process_count=4).next_batch(6)) for p in range(4)]
    assert sorted(sum(shards, [])) == ids(tasks)


def test_uneven_host_count_gives_equal_disjoint_shards():
    tasks = make_tasks(26)
    samplers = [TaskSampler(tasks, seed=1, process_index=p, process_count=4) for p in range(4)]
    shards = [set(ids(s.next_batch(6))) for s in samplers]
    assert all(len(s) == 6 for s in shards)
    assert len(set.union(*shards)) == 24
    # The next batch starts the next epoch on every host at once.
    assert all(s.next_batch(1) and s.epoch == 1 for s in samplers)


@pytest.mark.parametrize("consumed", [5, 20, 23, 41], ids=["mid-epoch", "at-boundary", "late", "epoch-2"])
def test_restore_resumes_exactly(consumed):
    tasks = make_tasks(20)
    original = TaskSampler(tasks, seed=7, process_index=1, process_count=2)  # 10 tasks per epoch per host
    for _ in range(consumed):
        original.next_batch(1)
    state = json.loads(json.dumps(original.state()))  # as it would come back from a checkpoint
    assert all(isinstance(v, int) for v in state.values())
    expected = [ids(original.next_batch(3)) for _ in range(9)]  # crosses at least two epoch boundaries

    restored = TaskSampler(tasks, seed=7, process_index=1, process_count=2)
    restored.restore(state)
    assert [ids(restored.next_batch(3)) for _ in range(9)] == expected


def test_restore_into_a_different_layout_is_one_line_error():
    tasks = make_tasks(20)
    state = TaskSampler(tasks, seed=7, process_count=2).state()
    with pytest.raises(ValueError, match=r"^sampler state has process_count=2 but this sampler has "
                                         r"process_count=4; restore with the same data"):
        TaskSampler(tasks, seed=7, process_count=4).restore(state)


def test_bad_host_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match=r"process_index=2 must lie in \[0, process_count=2\)"):
        TaskSampler(make_tasks(4), process_index=2, process_count=2)
    with pytest.raises(ValueError, match="3 tasks cannot be split over process_count=4 hosts"):
        TaskSampler(make_tasks(3), process_count=4)

"""Deterministic, host-sharded, resumable stream of training tasks.

Epoch e visits a permutation of all tasks drawn from (seed, e). Every host computes the same
permutation and takes its own contiguous slice of `len(tasks) // process_count` entries, so hosts
see disjoint tasks and the same number of them (the few left over by the division are different
tasks each epoch). The position in the stream is two integers, so a checkpoint restores it exactly.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from negojax.data.records import Task


class TaskSampler:

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, process_index: int = 0,
                 process_count: int = 1):
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index} must lie in [0, process_count={process_count})")
        if len(tasks) < process_count:
            raise ValueError(f"{len(tasks)} tasks cannot be split over process_count={process_count} hosts; "
                             f"use fewer hosts or more tasks")
        self._tasks = tasks
        self._seed = seed
        self._process_index = process_index
        self._process_count = process_count
        self._per_host = len(tasks) // process_count
        self._epoch = 0
        self._position = 0  # index into this host's slice of the current epoch
        self._order = self._host_order(0)

    @property
    def epoch(self) -> int:
        return self._epoch

    def _host_order(self, epoch: int) -> np.ndarray:
        permutation = np.random.default_rng([self._seed, epoch]).permutation(len(self._tasks))
        start = self._process_index * self._per_host
        return permutation[start:start + self._per_host]

    def next_batch(self, n: int) -> list[Task]:
        """The next n tasks of this host's stream, continuing into the next epoch when one ends."""
        batch = []
        while len(batch) < n:
            if self._position == self._per_host:
                self._epoch += 1
                self._position = 0
                self._order = self._host_order(self._epoch)
            take = min(n - len(batch), self._per_host - self._position)
            batch.extend(self._tasks[int(i)] for i in self._order[self._position:self._position + take])
            self._position += take
        return batch

    def state(self) -> dict[str, int]:
        return {"epoch": self._epoch, "position": self._position, "seed": self._seed,
                "process_index": self._process_index, "process_count": self._process_count,
                "num_tasks": len(self._tasks)}

    def restore(self, state: dict) -> None:
        """Continue exactly where the sampler that produced `state` was."""
        mine = self.state()
        for key in ("seed", "process_index", "process_count", "num_tasks"):
            if int(state[key]) != mine[key]:
                raise ValueError(f"sampler state has {key}={int(state[key])} but this sampler has {key}="
                                 f"{mine[key]}; restore with the same data, seed and host layout")
        self._epoch = int(state["epoch"])
        self._position = int(state["position"])
        self._order = self._host_order(self._epoch)

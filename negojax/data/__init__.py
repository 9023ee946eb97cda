"""Scenario data: validated JSONL -> TFDS array_record -> Tasks; a resumable host-sharded sampler."""
from negojax.data.records import SPLITS, TIERS, Persona, Task
from negojax.data.sampler import TaskSampler
from negojax.data.tfds_builder import load_tasks, task_source

__all__ = ["Persona", "Task", "TaskSampler", "load_tasks", "task_source", "SPLITS", "TIERS"]

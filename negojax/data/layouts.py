"""The two layouts a task directory can have, and which one a directory has.

  shipped  the six cross-referenced files of scenarios.py, curated; splits train, eval, open_ended
  user     train.jsonl and eval.jsonl of task_files.py, a user's own tasks; splits train, eval
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

from negojax import storage
from negojax.data.records import SPLITS, Task
from negojax.data.scenarios import FILES, load_scenarios
from negojax.data.task_files import SPLIT_FILES, load_task_files


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    noun: str
    files: tuple[str, ...]
    split_files: dict[str, str]  # split -> the file holding its tasks
    load: Callable[[str], dict[str, list[Task]]]  # split -> tasks, validated

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.split_files)

    def holds(self) -> str:
        return f"{self.noun} ({', '.join(self.files)})"


SHIPPED = Layout("shipped", "shipped scenario directory", tuple(name for name, _ in FILES.values()),
                 {split: FILES[split][0] for split in SPLITS}, lambda root: load_scenarios(root).tasks)
USER = Layout("user", "user task directory", tuple(SPLIT_FILES.values()), SPLIT_FILES, load_task_files)


def layout_of(root: str | pathlib.Path) -> Layout:
    """The layout whose files `root` (a local folder or an object-store URL) holds. Holding any one
    of a layout's files is enough, so that the loader then names the file that is missing rather
    than guessing at a layout."""
    root = str(root)
    found = [layout for layout in (USER, SHIPPED)
             if any(storage.isfile(storage.join(root, name)) for name in layout.files)]
    if not found and not storage.isdir(root):
        raise ValueError(f"{root}: no such folder; point it at a {USER.holds()} or a {SHIPPED.holds()}")
    if not found:
        raise ValueError(f"{root}: no task files; make it a {USER.holds()} or a {SHIPPED.holds()}")
    if len(found) > 1:
        raise ValueError(f"{root}: holds files of both layouts; keep either those of a {USER.holds()} "
                         f"or those of a {SHIPPED.holds()}")
    return found[0]

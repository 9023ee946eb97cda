"""The two layouts a task directory can have, and which one a directory has.

  shipped  the six cross-referenced files of scenarios.py, curated; splits train, eval, open_ended
  user     train.jsonl and eval.jsonl of task_files.py, a user's own tasks; splits train, eval
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable

from negojax.data.records import SPLITS, Task
from negojax.data.scenarios import FILES, load_scenarios
from negojax.data.task_files import SPLIT_FILES, load_task_files


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    noun: str
    files: tuple[str, ...]
    splits: tuple[str, ...]
    load: Callable[[pathlib.Path], dict[str, list[Task]]]  # split -> tasks, validated

    def holds(self) -> str:
        return f"{self.noun} ({', '.join(self.files)})"


SHIPPED = Layout("shipped", "shipped scenario directory", tuple(name for name, _ in FILES.values()), SPLITS,
                 lambda root: load_scenarios(root).tasks)
USER = Layout("user", "user task directory", tuple(SPLIT_FILES.values()), tuple(SPLIT_FILES), load_task_files)


def layout_of(root: pathlib.Path) -> Layout:
    """The layout whose files `root` holds. Holding any one of a layout's files is enough, so that
    the loader then names the file that is missing rather than guessing at a layout."""
    found = [layout for layout in (USER, SHIPPED) if any((root / name).is_file() for name in layout.files)]
    if not found:
        raise ValueError(f"{root}: no task files; make it a {USER.holds()} or a {SHIPPED.holds()}")
    if len(found) > 1:
        raise ValueError(f"{root}: holds files of both layouts; keep either those of a {USER.holds()} "
                         f"or those of a {SHIPPED.holds()}")
    return found[0]

"""JSON Lines, the format of every log a run writes (metrics, transcripts): one writer, one reader.

Records are made JSON-safe on the way out (numpy scalars and arrays to Python, NaN and inf to
null, as JSON has no NaN). A run killed mid-write leaves a torn last line, which readers skip.
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, Iterator

import numpy as np


def plain(value):
    """A JSON-safe copy of `value`."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append(path: str, records: Iterable[dict]) -> int:
    """Append records to `path`, one JSON object per line, creating its folder; returns how
    many. The file is flushed and fsynced, so a crash loses at most the records being written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    lines = [json.dumps(plain(r), ensure_ascii=False) + "\n" for r in records]
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())
    return len(lines)


class Records:
    """Iterates the objects of a JSONL file (none when it is missing). Unreadable lines are
    skipped and counted in `unreadable`; with `strict`, one that is not a torn last line is a
    one-line ValueError naming file and line instead."""

    def __init__(self, path: str | None, *, strict: bool = True):
        self.path, self.strict, self.unreadable = path, strict, 0

    def __iter__(self) -> Iterator[dict]:
        if self.path is None or not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as f:
            lines = f.readlines()
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                torn = lineno == len(lines) and not line.endswith("\n")
                if self.strict and not torn:
                    raise ValueError(f"{self.path} line {lineno}: not a JSON record ({error.msg}); "
                                     "delete or repair that line") from None
                self.unreadable += 1


def keep_through_step(path: str, step: int) -> None:
    """Drop the records of `path` past `step` (and unreadable lines): a resumed run rewrites the
    steps after its checkpoint, which a crash may have left behind."""
    if not os.path.exists(path):
        return
    kept = [r for r in Records(path, strict=False) if r.get("step", 0) <= step]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)

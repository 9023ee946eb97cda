"""JSON Lines, the format of every log a run writes (metrics, transcripts): one writer, one reader.

Records are made JSON-safe on the way out (numpy scalars and arrays to Python, NaN and inf to
null, as JSON has no NaN). A run killed mid-write leaves a torn last line, which readers skip.
"""
from __future__ import annotations

import json
import math
from typing import Iterable, Iterator

import numpy as np

from negojax import storage


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


class Writer:
    """Appends records to a JSONL file, one JSON object per line (see storage.Appender: locally
    each write is fsynced, so a crash loses at most the records being written; in an object
    store writes are uploaded in batches, and at every `flush()`)."""

    def __init__(self, path: str):
        self.path = path
        self._appender = storage.Appender(path)

    def write(self, records: Iterable[dict]) -> int:
        """Append `records`; returns how many."""
        lines = [json.dumps(plain(r), ensure_ascii=False) + "\n" for r in records]
        self._appender.write("".join(lines))
        return len(lines)

    def flush(self) -> None:
        self._appender.flush()

    def close(self) -> None:
        self._appender.close()


class Records:
    """Iterates the objects of a JSONL file (none when it is missing). Unreadable lines are
    skipped and counted in `unreadable`; with `strict`, one that is not a torn last line is a
    one-line ValueError naming file and line instead."""

    def __init__(self, path: str | None, *, strict: bool = True):
        self.path, self.strict, self.unreadable = path, strict, 0

    def __iter__(self) -> Iterator[dict]:
        if self.path is None or not storage.exists(self.path):
            return
        lines = storage.read_text(self.path).splitlines(keepends=True)
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
    if not storage.exists(path):
        return
    kept = [r for r in Records(path, strict=False) if r.get("step", 0) <= step]
    storage.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))

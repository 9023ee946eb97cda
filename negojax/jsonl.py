"""JSON Lines, the format of every log a run writes (metrics, transcripts): one writer, one reader.

Records are made JSON-safe on the way out (numpy scalars and arrays to Python, NaN and inf to
null, as JSON has no NaN). A run killed mid-write leaves a torn last line, which readers skip.
"""
from __future__ import annotations

import datetime
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
    """Iterates the objects of a JSONL file (none when it is missing). Unreadable lines (not
    JSON, or not UTF-8: a write torn inside a character) are skipped, their numbers kept in
    `unreadable_lines`; with `strict`, one that is not a torn last line is a one-line ValueError
    naming file and line instead."""

    def __init__(self, path: str | None, *, strict: bool = True):
        self.path, self.strict, self.unreadable_lines = path, strict, []

    @property
    def unreadable(self) -> int:
        return len(self.unreadable_lines)

    def __iter__(self) -> Iterator[dict]:
        if self.path is None or not storage.exists(self.path):
            return
        with storage.open(self.path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line.decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                torn = lineno == len(lines) and not line.endswith(b"\n")
                if self.strict and not torn:
                    problem = getattr(error, "msg", None) or "not UTF-8"
                    raise ValueError(f"{self.path} line {lineno}: not a JSON record ({problem}); "
                                     "delete or repair that line") from None
                self.unreadable_lines.append(lineno)


def copy_aside(path: str, label: str) -> str:
    """Copy `path`'s bytes to `<path>.<label>-<UTC time>`, a name no file has yet (what was set
    aside before is never overwritten); returns that name."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target, n = f"{path}.{label}-{stamp}", 1
    while storage.exists(target):
        n += 1
        target = f"{path}.{label}-{stamp}-{n}"
    with storage.open(path, "rb") as f:
        data = f.read()
    with storage.open(target, "wb") as f:
        f.write(data)
    return target


def keep_through_step(path: str, step: int) -> None:
    """Drop the records of `path` past `step`: a resumed run rewrites the steps after its
    checkpoint, which a crash may have left behind. Unreadable lines cannot be kept, so the file
    as it was is first copied aside (`<path>.damaged-<UTC time>`) and a warning names them."""
    if not storage.exists(path):
        return
    records = Records(path, strict=False)
    kept = [r for r in records if r.get("step", 0) <= step]
    if records.unreadable_lines:
        aside = copy_aside(path, "damaged")
        lines = ", ".join(map(str, records.unreadable_lines))
        print(f"warning: {path} has unreadable line(s) {lines}; the file as it was is kept as "
              f"{aside}, and its readable rows through step {step} are kept", flush=True)
    storage.write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))

"""The one reader of hand-edited JSONL data files: each non-blank line decoded and parsed, or a
one-line ValueError naming the file and line (schemas are checked by the callers)."""
from __future__ import annotations

import json
import pathlib
from typing import Iterator

from negojax import storage


def json_lines(path: str | pathlib.Path) -> Iterator[tuple[str, int, object]]:
    """(where, line number, parsed value) for each non-blank line, where = "<path> line <n>";
    a local path or an object-store URL (negojax.storage)."""
    with storage.open(str(path), "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path} line {lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: byte {e.start + 1} ({raw[e.start:e.start + 1]!r}) is "
                                 "not UTF-8; save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                yield where, lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); "
                                 f"each line must be one JSON object") from None

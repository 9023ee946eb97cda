"""Dialogue transcripts as JSONL: one record per dialogue, appended step by step."""
from __future__ import annotations

import json
import math
import os
from typing import Iterable, Iterator

import numpy as np

TRANSCRIPTS_FILE = "transcripts.jsonl"


def _plain(value):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_transcripts(path: str, records: Iterable[dict]) -> int:
    """Append records (one JSON object per line) to path, creating its folder; returns how many.
    The file is flushed and fsynced so a crash loses at most the step being written."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    lines = [json.dumps(_plain(r), ensure_ascii=False) + "\n" for r in records]
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())
    return len(lines)


def read_transcripts(path: str) -> Iterator[dict]:
    """Records of a transcripts JSONL; a broken line is a one-line error naming file and line
    (a torn last line from an interrupted write is skipped)."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            if lineno == len(lines) and not line.endswith("\n"):
                return
            raise ValueError(f"{path} line {lineno}: not a JSON transcript record ({e.msg}); "
                             "delete or repair that line") from None

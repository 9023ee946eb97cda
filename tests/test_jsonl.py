"""The one JSON Lines writer and reader: JSON-safe records, torn lines, resumed runs."""
import json

import numpy as np
import pytest

from negojax import jsonl


def test_records_are_written_json_safe(tmp_path):
    path = str(tmp_path / "sub" / "log.jsonl")
    record = {"step": np.int64(1), "x": np.float32(0.5), "bad": float("nan"), "v": np.arange(2)}
    assert jsonl.Writer(path).write([record]) == 1
    assert list(jsonl.Records(path)) == [{"step": 1, "x": 0.5, "bad": None, "v": [0, 1]}]


def test_torn_last_line_is_skipped_and_a_bad_line_named(tmp_path):
    path = tmp_path / "transcripts.jsonl"
    path.write_text(json.dumps({"id": "a"}) + "\n" + '{"id": "b", "tu')
    records = jsonl.Records(str(path))
    assert [r["id"] for r in records] == ["a"] and records.unreadable == 1
    path.write_text('{"broken\n' + json.dumps({"id": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"transcripts.jsonl line 1: not a JSON record") as err:
        list(jsonl.Records(str(path)))
    assert "\n" not in str(err.value)
    lenient = jsonl.Records(str(path), strict=False)
    assert [r["id"] for r in lenient] == ["a"] and lenient.unreadable == 1


def test_keep_through_step_drops_what_a_crash_left_behind(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    jsonl.Writer(path).write([{"step": s} for s in (1, 2, 3)])
    with open(path, "a") as f:
        f.write('{"step": 4, "tor')
    jsonl.keep_through_step(path, 2)
    assert [r["step"] for r in jsonl.Records(path)] == [1, 2]
    jsonl.keep_through_step(str(tmp_path / "missing.jsonl"), 2)  # nothing to cut

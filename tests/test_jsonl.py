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


ROWS = [json.dumps({"step": s}) + "\n" for s in (1, 2, 3)]


@pytest.mark.parametrize("lines, damaged_line", [
    (ROWS + ['{"step": 4, "tor'], 4),                   # a run killed mid-write
    (['{"ste\n'] + ROWS, 1),                            # a damaged first line
    (ROWS[:1] + ['{"step": 2, "to\n'] + ROWS[1:], 2),   # torn mid-file, rows appended after
])
def test_keep_through_step_sets_a_damaged_log_aside_and_keeps_every_readable_row(
        tmp_path, capsys, lines, damaged_line):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes("".join(lines).encode())
    jsonl.keep_through_step(str(path), 3)
    assert [r["step"] for r in jsonl.Records(str(path))] == [1, 2, 3]
    [aside] = tmp_path.glob("metrics.jsonl.damaged-*")
    assert aside.read_bytes() == "".join(lines).encode()
    warning = capsys.readouterr().out.strip()
    assert warning.count("\n") == 0 and str(path) in warning and str(aside) in warning
    assert f"line(s) {damaged_line};" in warning
    jsonl.keep_through_step(str(path), 2)  # now whole: nothing more set aside
    assert len(list(tmp_path.glob("metrics.jsonl.damaged-*"))) == 1


def test_a_line_torn_inside_a_character_is_unreadable_not_a_crash(tmp_path):
    path = tmp_path / "transcripts.jsonl"
    path.write_bytes(ROWS[0].encode() + '{"text": "é'.encode()[:-1])
    records = jsonl.Records(str(path))
    assert [r["step"] for r in records] == [1] and records.unreadable_lines == [2]


def test_copy_aside_never_overwrites(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("a\n")
    first = jsonl.copy_aside(str(path), "damaged")
    path.write_text("b\n")
    second = jsonl.copy_aside(str(path), "damaged")
    assert first != second
    assert open(first).read() == "a\n" and open(second).read() == "b\n"

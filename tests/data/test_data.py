"""Scenario rows: validation errors, the TFDS array_record round trip, caching and no TensorFlow."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from negojax.data import Persona, Task, TaskSampler, load_tasks, task_source
from negojax.data.scenarios import load_scenarios

VALID = pathlib.Path(__file__).parent / "valid"


@pytest.fixture
def resources(tmp_path):
    """A writable copy of the small valid scenario set."""
    root = tmp_path / "resources"
    shutil.copytree(VALID, root)
    return root


def set_line(path: pathlib.Path, lineno: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def row(path: pathlib.Path, lineno: int) -> dict:
    return json.loads(path.read_text(encoding="utf-8").splitlines()[lineno - 1])


def edited(path, lineno, **changes):
    r = row(path, lineno)
    for key, value in changes.items():
        if value is None:
            r.pop(key)
        else:
            r[key] = value
    return json.dumps(r)


# (file, line, new line given the old row, what the one-line error must say)
MALFORMED = [
    ("personas.jsonl", 2, lambda p: edited(p, 2, fears=None),
     "personas.jsonl line 2: missing field 'fears'; every persona needs id, name, core_value, wants, fears, style"),
    ("personas.jsonl", 3, lambda p: edited(p, 3, style="  "),
     "personas.jsonl line 3: field 'style' is empty or not a string; every persona needs id, name"),
    ("personas.jsonl", 4, lambda p: '{"id": "x", "name": "X",',
     "personas.jsonl line 4: not valid JSON ("),
    ("personas.jsonl", 5, lambda p: "[1, 2]",
     "personas.jsonl line 5: expected a JSON object, got list"),
    ("personas.jsonl", 2, lambda p: edited(p, 2, id="cost_minimiser"),
     "personas.jsonl line 2: duplicate id 'cost_minimiser' (first on line 1)"),
    ("persona_pairs.jsonl", 2, lambda p: edited(p, 2, personas=["privacy_guardian", "nobody"]),
     "persona_pairs.jsonl line 2: unknown persona 'nobody'; add it to personas.jsonl"),
    ("persona_pairs.jsonl", 1, lambda p: edited(p, 1, personas=["cost_minimiser"]),
     "persona_pairs.jsonl line 1: a persona pair lists 2 distinct persona ids"),
    ("persona_sets.jsonl", 1, lambda p: edited(p, 1, id="cost_vs_quality"),
     "persona_sets.jsonl line 1: group id 'cost_vs_quality' is already used at"),
    ("dilemmas.jsonl", 3, lambda p: edited(p, 3, tier="epic"),
     "dilemmas.jsonl line 3: unknown tier 'epic'; use one of professional, interpersonal, everyday"),
    ("dilemmas.jsonl", 4, lambda p: edited(p, 4, group="cats_vs_dogs"),
     "dilemmas.jsonl line 4: unknown group 'cats_vs_dogs'; use an id from persona_pairs.jsonl or"),
    ("dilemmas.jsonl", 1, lambda p: edited(p, 1, dilemma=None),
     "dilemmas.jsonl line 1: missing field 'dilemma'; every dilemma needs id, tier, dilemma, group"),
    ("eval_tasks.jsonl", 1, lambda p: edited(p, 1, group="cats_vs_dogs"),
     "eval_tasks.jsonl line 1: unknown group 'cats_vs_dogs'; use an id from persona_pairs.jsonl or"),
    ("eval_tasks.jsonl", 2, lambda p: edited(p, 2, id="train-0002"),
     "eval_tasks.jsonl line 2: id 'train-0002' is already used at"),
    ("open_ended.jsonl", 2, lambda p: edited(p, 2, question=""),
     "open_ended.jsonl line 2: field 'question' is empty or not a string"),
]


@pytest.mark.parametrize("name,lineno,make_line,message", MALFORMED,
                         ids=[f"{m[0]}:{m[1]}:{m[3].split(': ')[1][:24]}" for m in MALFORMED])
def test_malformed_row_gives_one_line_error_naming_file_line_and_fix(resources, name, lineno, make_line,
                                                                     message):
    path = resources / name
    set_line(path, lineno, make_line(path))
    with pytest.raises(ValueError) as error:
        load_tasks("train", resources_dir=resources, data_dir=resources.parent / "tfds")
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(str(path)), text
    assert message in text, text


def test_missing_file_names_it(resources):
    (resources / "persona_sets.jsonl").unlink()
    with pytest.raises(ValueError, match=r"persona_sets\.jsonl: file not found") as error:
        load_scenarios(resources)
    assert "\n" not in str(error.value)


def test_unknown_split_is_one_line_error(resources):
    with pytest.raises(ValueError, match="^unknown split 'test'; use one of train, eval, open_ended$"):
        load_tasks("test", resources_dir=resources, data_dir=resources.parent / "tfds")


def test_load_tasks_round_trips_through_tfds_in_file_order(resources, tmp_path):
    direct = load_scenarios(resources).tasks
    for split in ("train", "eval", "open_ended"):
        tasks = load_tasks(split, resources_dir=resources, data_dir=tmp_path / "tfds")
        assert tasks == direct[split]
    train = load_tasks("train", resources_dir=resources, data_dir=tmp_path / "tfds")
    assert [t.id for t in train] == ["train-0001", "train-0002", "train-0003", "train-0004"]
    family = train[2]
    assert isinstance(family, Task) and family.group == "family_dinner" and family.tier == "everyday"
    assert [p.id for p in family.personas] == ["budget_keeper", "health_advocate", "tradition_keeper"]
    assert isinstance(family.personas[0], Persona) and family.personas[0].fears
    question = load_tasks("open_ended", resources_dir=resources, data_dir=tmp_path / "tfds")[1]
    assert (question.tier, question.personas, question.group) == ("open_ended", (), "")
    assert question.dilemma == "When, if ever, is a white lie kind?"
    assert list((tmp_path / "tfds").glob("*/negojax_scenarios/1.1.0/*.array_record-*"))


def test_prepared_once_then_reused_and_rebuilt_when_content_changes(resources, tmp_path):
    data_dir = tmp_path / "tfds"
    load_tasks("train", resources_dir=resources, data_dir=data_dir)
    (record,) = data_dir.glob("*/negojax_scenarios/1.1.0/*-train.array_record-*")
    before = record.stat()
    assert len(load_tasks("eval", resources_dir=resources, data_dir=data_dir)) == 2
    after = record.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)

    extra = {"id": "train-0005", "tier": "professional", "group": "privacy_vs_safety",
             "dilemma": "Your app could scan messages for threats. Users were promised privacy. Do you scan?"}
    with open(resources / "dilemmas.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(extra) + "\n")
    train = load_tasks("train", resources_dir=resources, data_dir=data_dir)
    assert [t.id for t in train][-1] == "train-0005"
    assert len(list(data_dir.glob("*/negojax_scenarios"))) == 2


def test_first_preparation_prints_nothing(resources, tmp_path, capfd):
    """TFDS prints "Downloading and preparing dataset ..." to stdout on a first preparation,
    which broke the run's progress bar line; the preparation keeps both streams clean."""
    load_tasks("train", resources_dir=resources, data_dir=tmp_path / "tfds")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_default_data_dir_is_under_negojax_cache(resources, tmp_path, monkeypatch):
    monkeypatch.setenv("NEGOJAX_CACHE", str(tmp_path / "cache"))
    load_tasks("eval", resources_dir=resources)
    assert list((tmp_path / "cache" / "tfds").glob("*/negojax_scenarios/1.1.0/dataset_info.json"))


BLOCK_TENSORFLOW = """
import importlib.abc, importlib.machinery, sys

attempts = []

class Unimportable(importlib.abc.Loader):
    def create_module(self, spec):
        attempts.append(spec.name)
        raise ImportError(f"{spec.name} is blocked in this test")

    def exec_module(self, module):
        pass

class BlockTensorFlow(importlib.abc.MetaPathFinder):
    # TensorFlow looks installed (find_spec succeeds, as where it really is installed) but any
    # import of it fails and is recorded.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            return importlib.machinery.ModuleSpec(name, Unimportable())
        return None

sys.meta_path.insert(0, BlockTensorFlow())
from negojax.data import load_tasks
tasks = load_tasks("train", resources_dir=sys.argv[1], data_dir=sys.argv[2])
assert len(tasks) == 4 and tasks[2].personas, tasks
assert not attempts, f"tried to import {attempts}"
assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"], "tensorflow got imported"
print("OK")
"""


def test_prepare_and_read_work_with_tensorflow_unimportable(resources, tmp_path):
    result = subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW, str(resources), str(tmp_path / "tfds")],
                            capture_output=True, text=True, timeout=120, env={**os.environ})
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]


def test_sampler_reads_lazily_from_the_array_record_source(resources, tmp_path):
    source = task_source("train", resources_dir=resources, data_dir=tmp_path / "tfds")
    eager = load_tasks("train", resources_dir=resources, data_dir=tmp_path / "tfds")
    lazy_batch = TaskSampler(source, seed=5).next_batch(6)
    eager_batch = TaskSampler(eager, seed=5).next_batch(6)
    assert lazy_batch == eager_batch and all(isinstance(t, Task) for t in lazy_batch)


def test_empty_file_is_one_line_error(resources):
    (resources / "open_ended.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"open_ended\.jsonl: no rows; add at least one open-ended question"):
        load_tasks("train", resources_dir=resources, data_dir=resources.parent / "tfds")

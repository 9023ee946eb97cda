"""A user's own task directory (train.jsonl, eval.jsonl): loading through TFDS, one-line errors,
prompts without the absent fields, and generate's output as such a directory."""
import json
import pathlib
import shutil

import pytest

from negojax.data import Persona, Task, load_tasks, task_source
from negojax.data.generate import generate
from negojax.negotiation import prompts
from negojax.rewards.rubric import format_persona

VALID = pathlib.Path(__file__).parent / "valid"

ANN = {"name": "Ann", "core_value": "thrift"}
BO = {"name": "Bo", "core_value": "comfort", "wants": "a warm flat", "fears": "a cold winter",
      "style": "Warm but stubborn."}
CY = {"name": "Cy", "core_value": "the planet", "style": "Quotes figures."}
DEE = {"name": "Dee", "core_value": "fairness", "fears": "that someone pays for the others"}

TRAIN = [
    {"id": "heat-1", "dilemma": "The flat's heating bill doubled. Do you turn the heating down?",
     "personas": [ANN, BO], "tier": "Household / money", "group": "flatmates"},
    {"id": "heat-2", "dilemma": "A heat pump costs a year's savings. Do the three of you buy one?",
     "personas": [ANN, BO, CY], "tier": "ünïcode tier"},
    {"id": "heat-3", "dilemma": "One flatmate works from home all day. Who pays for the daytime heat?",
     "personas": [ANN, BO, CY, DEE], "group": "all four"},
]
EVAL = [{"id": "eval-1", "dilemma": "The landlord offers insulation if the rent rises. Do you accept?",
         "personas": [DEE, CY], "tier": "x"}]


def write(path: pathlib.Path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in rows), encoding="utf-8")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEGOJAX_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tasks_dir(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    write(root / "train.jsonl", TRAIN)
    write(root / "eval.jsonl", EVAL)
    return root


def persona(fields) -> Persona:
    return Persona(**fields)


def test_a_user_directory_loads_through_tfds_with_the_exact_fields(tasks_dir, tmp_path):
    train = load_tasks("train", resources_dir=tasks_dir)
    assert train == [
        Task(id="heat-1", split="train", tier="Household / money", dilemma=TRAIN[0]["dilemma"],
             personas=(persona(ANN), persona(BO)), group="flatmates"),
        Task(id="heat-2", split="train", tier="ünïcode tier", dilemma=TRAIN[1]["dilemma"],
             personas=(persona(ANN), persona(BO), persona(CY)), group=""),
        Task(id="heat-3", split="train", tier="", dilemma=TRAIN[2]["dilemma"],
             personas=(persona(ANN), persona(BO), persona(CY), persona(DEE)), group="all four"),
    ]
    assert train[0].personas[0] == Persona(name="Ann", core_value="thrift", wants="", fears="", style="", id="")
    assert load_tasks("eval", resources_dir=tasks_dir) == [
        Task(id="eval-1", split="eval", tier="x", dilemma=EVAL[0]["dilemma"], personas=(persona(DEE), persona(CY)),
             group="")]
    assert len(task_source("train", resources_dir=tasks_dir)) == 3
    assert list((tmp_path / "cache" / "tfds").glob("*/negojax_scenarios/1.1.0/*-eval.array_record-*"))


def test_an_edited_user_file_is_prepared_afresh(tasks_dir):
    assert len(load_tasks("eval", resources_dir=tasks_dir)) == 1
    write(tasks_dir / "eval.jsonl", EVAL + [{**EVAL[0], "id": "eval-2"}])
    assert [t.id for t in load_tasks("eval", resources_dir=tasks_dir)] == ["eval-1", "eval-2"]


def test_open_ended_of_a_user_directory_is_one_line_error(tasks_dir):
    with pytest.raises(ValueError, match=r"^.*mine: a user task directory holds the splits train and eval only, "
                                         r"not 'open_ended'; ask for one of those$"):
        load_tasks("open_ended", resources_dir=tasks_dir)


def row_with(index=1, **changes):
    row = json.loads(json.dumps(TRAIN[index]))
    for key, value in changes.items():
        if value is None:
            row.pop(key)
        else:
            row[key] = value
    return json.dumps(row)


def persona_with(index, **changes):
    personas = [dict(p) for p in TRAIN[1]["personas"]]
    for key, value in changes.items():
        if value is None:
            personas[index].pop(key)
        else:
            personas[index][key] = value
    return row_with(personas=personas)


# (line 2 of train.jsonl, what the one-line error must say after "<dir>/train.jsonl line 2: ")
BAD_ROWS = [
    ('{"id": "x",', "not valid JSON ("),
    ("[1, 2]", "expected a JSON object, got list; every task needs id, dilemma and personas (tier, group are "
               "optional)"),
    (row_with(dilemma=None), "missing field 'dilemma'; every task needs id, dilemma and personas"),
    (row_with(dilemma="  "), "field 'dilemma' must be a non-empty string, got \"  \"; every task needs"),
    (row_with(id=7), "field 'id' must be a non-empty string, got 7;"),
    (row_with(tier=3), "field 'tier' must be a string, got 3;"),
    (row_with(teir="everyday"), "unknown field 'teir'; did you mean 'tier'? a task has only id, dilemma, "
                                "personas, tier, group"),
    (persona_with(1, core_value=None), "personas[1] missing field 'core_value'; every persona needs name and "
                                       "core_value (wants, fears, style are optional)"),
    (persona_with(1, core_values="warmth"), "personas[1] unknown field 'core_values'; did you mean 'core_value'?"),
    (persona_with(0, name=""), "personas[0] field 'name' must be a non-empty string"),
    (persona_with(2, style=["terse"]), "personas[2] field 'style' must be a string, got [\"terse\"]"),
    (row_with(personas=["Ann", "Bo"]), "personas[0] expected a JSON object, got str; every persona needs"),
    (row_with(personas="Ann and Bo"), "field 'personas' must be a list of 2 to 4 persona objects, got \"Ann and Bo\""),
    (row_with(personas=[ANN]), "field 'personas' must be a list of 2 to 4 persona objects, got 1 personas"),
    (row_with(personas=[ANN, BO, CY, DEE, {"name": "Eve", "core_value": "x"}]),
     "field 'personas' must be a list of 2 to 4 persona objects, got 5 personas"),
    (row_with(personas=[ANN, BO, {"name": "ann ", "core_value": "x"}]),
     "personas[2] repeats the name 'ann' of personas[0]; give each persona of a task its own name"),
    (row_with(id="heat-1"), "id 'heat-1' is already used at {dir}/train.jsonl line 1; give each task of the "
                            "directory its own id"),
]


@pytest.mark.parametrize("line,message", BAD_ROWS, ids=[m[:32] for _, m in BAD_ROWS])
def test_a_bad_row_is_one_line_error_naming_file_line_and_field(tasks_dir, line, message):
    write(tasks_dir / "train.jsonl", [TRAIN[0], line, TRAIN[2]])
    with pytest.raises(ValueError) as error:
        load_tasks("train", resources_dir=tasks_dir)
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(f"{tasks_dir}/train.jsonl line 2: "), text
    assert message.format(dir=tasks_dir) in text, text


def test_an_eval_id_already_used_in_train_is_one_line_error(tasks_dir):
    write(tasks_dir / "eval.jsonl", [EVAL[0], {**EVAL[0], "id": "heat-2"}])
    with pytest.raises(ValueError, match=r"eval\.jsonl line 2: id 'heat-2' is already used at .*train\.jsonl "
                                         r"line 2; give each task of the directory its own id$"):
        load_tasks("eval", resources_dir=tasks_dir)


def test_a_missing_empty_or_non_utf8_file_is_one_line_error(tasks_dir):
    (tasks_dir / "eval.jsonl").unlink()
    with pytest.raises(ValueError, match=r"eval\.jsonl: file not found; a user task directory holds train\.jsonl "
                                         r"and eval\.jsonl$"):
        load_tasks("train", resources_dir=tasks_dir)
    (tasks_dir / "eval.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"eval\.jsonl: no tasks; add at least one task, one JSON object per line$"):
        load_tasks("train", resources_dir=tasks_dir)
    (tasks_dir / "eval.jsonl").write_bytes(json.dumps(EVAL[0]).replace("landlord", "landl\xf6rd").encode("latin-1"))
    with pytest.raises(ValueError, match=r"eval\.jsonl line 1: byte \d+ \(b'\\xf6'\) is not UTF-8; save the file "
                                         r"as UTF-8$"):
        load_tasks("train", resources_dir=tasks_dir)


def test_a_directory_of_neither_or_both_layouts_is_one_line_error(tmp_path, tasks_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty: no task files; make it a user task directory \(train\.jsonl, "
                                         r"eval\.jsonl\) or a shipped scenario directory \(personas\.jsonl, "):
        load_tasks("train", resources_dir=empty)
    shutil.copy(VALID / "dilemmas.jsonl", tasks_dir)
    with pytest.raises(ValueError, match=r"mine: holds files of both layouts; keep either"):
        load_tasks("train", resources_dir=tasks_dir)


def test_prompts_and_rubric_leave_absent_fields_out():
    ann, bo, cy = persona(ANN), persona(BO), persona(CY)
    text = prompts.system_prompt(ann, [bo], None)
    assert "Your core value: thrift\n\nSpeak for your core value" in text
    assert not any(label in text for label in ("What you want", "What you fear", "negotiation style"))
    assert "Your negotiation style: Quotes figures.\n\n" in prompts.system_prompt(cy, [ann], None)
    assert "What you want" not in prompts.system_prompt(cy, [ann], None)
    parties = prompts.single_agent_messages("D", [ann, cy])[1]["content"]
    assert "Ann\n- Core value: thrift\n\nCy\n- Core value: the planet\n- Negotiation style: Quotes figures." in parties
    assert format_persona(ann) == "- Ann: core value: thrift"
    assert format_persona(cy) == "- Cy: core value: the planet; style: Quotes figures."
    assert format_persona(DEE) == "- Dee: core value: fairness; fears: that someone pays for the others"
    assert format_persona(bo) == ("- Bo: core value: comfort; wants: a warm flat; fears: a cold winter; "
                                  "style: Warm but stubborn.")


class Replies:
    """A fake generation backend: every prompt is answered with the next of `texts`."""

    def __init__(self, texts):
        self.texts = iter(texts)

    def __call__(self, prompts_):
        return [json.dumps({"dilemma": next(self.texts)}) for _ in prompts_]


def test_generate_output_is_a_user_task_directory(tmp_path):
    out = tmp_path / "generated"
    texts = ["A hospital can fund a night shift nurse or a new scanner this year, but not both. Which do you fund?",
             "Your neighbour asks you to sign a petition against a shelter you privately support. Do you sign?",
             "A colleague's expense claim includes a dinner you know was personal. Do you raise it with them?"]
    generate("dilemmas", out, 2, Replies(texts[:2]), resources_dir=VALID)
    generate("dilemmas", out, 1, Replies(texts[2:]), split="eval", resources_dir=VALID)
    train = load_tasks("train", resources_dir=out)
    evaluation = load_tasks("eval", resources_dir=out)
    assert [t.dilemma for t in train + evaluation] == texts
    assert [t.id for t in train + evaluation] == ["gen-00000", "gen-00001", "gen-00002"]
    assert all(t.group and t.tier and 2 <= len(t.personas) <= 4 and all(p.wants for p in t.personas)
               for t in train + evaluation)

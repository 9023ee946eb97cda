"""generate: only rows that parse, validate and are not near-duplicates get appended, as task rows."""
import json
import pathlib

import pytest

from negojax.data.generate import NearDuplicates, first_json_object, generate, main, persona_row
from negojax.data.scenarios import load_scenarios
from negojax.data.task_files import read_task_file

VALID = pathlib.Path(__file__).parent / "valid"
SHIPPED_TRAIN_0001 = ("Your hospital must replace its imaging scanners this year. The cheaper model is slower "
                      "and less precise. Which scanner do you buy?")


class ScriptedBackend:
    """A deterministic backend: call k returns replies[k], one per prompt; records every prompt."""

    def __init__(self, *replies: list):
        self.replies = list(replies)
        self.prompts = []

    def __call__(self, prompts):
        self.prompts.append(list(prompts))
        reply = self.replies.pop(0)
        assert len(reply) == len(prompts), (len(reply), len(prompts))
        return reply


def dilemma(text):
    return json.dumps({"dilemma": text})


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


NEW_A = ("A school can afford either a new science lab or smaller class sizes next year. Parents are split, "
         "and teachers warn that both matter. Which do you fund?")
NEW_B = ("Your flatmate keeps a spare key for a friend who has been struggling. You learn the friend "
         "entered while you were away. Do you change the locks?")


def test_keeps_valid_new_dilemmas_and_drops_broken_or_near_duplicate(tmp_path):
    out = tmp_path / "out"
    backend = ScriptedBackend([
        f"Sure! Here it is:\n```json\n{dilemma(NEW_A)}\n```",          # kept despite the prose around it
        dilemma(SHIPPED_TRAIN_0001.replace("this year", "this spring")),  # near-copy of a shipped dilemma
        "I cannot write that.",                                          # no JSON
        json.dumps({"dilemma": "   "}),                                  # empty field
        json.dumps({"text": NEW_B}),                                     # wrong field
    ], [dilemma(NEW_B), dilemma(NEW_A + " Decide now."), "{", "{}"])
    report = generate("dilemmas", out, 5, backend, resources_dir=VALID, seed=0, max_rounds=2)

    rows = read(out / "train.jsonl")
    assert not (out / "eval.jsonl").exists()
    assert [r["dilemma"] for r in rows] == [NEW_A, NEW_B]
    assert (report.kept, report.invalid, report.duplicate) == (2, 5, 2)
    assert [r["id"] for r in rows] == ["gen-00000", "gen-00001"]
    shipped = load_scenarios(VALID)
    for r in rows:
        assert set(r) == {"id", "dilemma", "personas", "tier", "group"}
        assert r["tier"] in ("professional", "interpersonal", "everyday")
        # The group's personas travel inline, without the shipped ids.
        assert r["personas"] == [persona_row(shipped.personas[p]) for p in shipped.groups[r["group"]]]
        assert all("id" not in p for p in r["personas"])
    assert [len(p) for p in backend.prompts] == [5, 4]  # the second round asks only for what is missing

    # The kept rows are valid rows of a user task directory.
    tasks = read_task_file(out / "train.jsonl", "train", {})
    assert [t.dilemma for t in tasks] == [NEW_A, NEW_B]


def test_a_second_run_appends_and_rejects_what_the_first_kept(tmp_path):
    out = tmp_path / "out"
    generate("dilemmas", out, 1, ScriptedBackend([dilemma(NEW_A)]), resources_dir=VALID)
    report = generate("dilemmas", out, 1, ScriptedBackend([dilemma(NEW_A)], [dilemma(NEW_B)]),
                      resources_dir=VALID)
    assert (report.kept, report.duplicate) == (1, 1)
    assert [r["id"] for r in read(out / "train.jsonl")] == ["gen-00000", "gen-00001"]


def test_split_eval_writes_eval_jsonl_and_both_files_count_as_seen(tmp_path):
    out = tmp_path / "out"
    generate("dilemmas", out, 1, ScriptedBackend([dilemma(NEW_A)]), split="eval", resources_dir=VALID)
    assert [r["dilemma"] for r in read(out / "eval.jsonl")] == [NEW_A] and not (out / "train.jsonl").exists()
    # A row the user wrote by hand is as much "already in DIR" as a generated one.
    own = {"id": "mine-1", "dilemma": NEW_B, "personas": [{"name": "Ann", "core_value": "thrift"},
                                                          {"name": "Bo", "core_value": "comfort"}]}
    (out / "train.jsonl").write_text(json.dumps(own) + "\n", encoding="utf-8")
    report = generate("dilemmas", out, 1, ScriptedBackend([dilemma(NEW_A)], [dilemma(NEW_B + " Decide.")]),
                      resources_dir=VALID, max_rounds=2)
    assert (report.kept, report.duplicate) == (0, 2)
    assert [r["id"] for r in read(out / "train.jsonl")] == ["mine-1"]


def persona(name, value):
    return {"name": name, "core_value": value, "wants": f"to protect {value} in every decision",
            "fears": f"a world where {value} is treated as optional", "style": "Asks questions before conceding."}


def pair(conflict, *personas):
    return json.dumps({"conflict": conflict, "personas": list(personas)})


def test_pairs_keep_only_new_valid_pairs_and_append_their_personas(tmp_path):
    out = tmp_path / "out"
    good = pair("speed vs deliberation", persona("Fast Mover", "momentum"), persona("Careful Deliberator", "caution"))
    existing_name = pair("loyalty vs candour", persona("Cost Minimiser", "loyalty"), persona("Truth Teller", "candour"))
    same_conflict = pair("speed versus deliberation", persona("Sprinter", "velocity"), persona("Ponderer", "patience"))
    missing_fears = json.dumps({"conflict": "art vs profit", "personas": [
        {k: v for k, v in persona("Artist", "beauty").items() if k != "fears"}, persona("Trader", "profit")]})
    one_persona = pair("solo vs team", persona("Loner", "independence"))
    report = generate("pairs", out, 1, ScriptedBackend([good]), resources_dir=VALID)
    assert report.kept == 1
    report = generate("pairs", out, 4, ScriptedBackend([existing_name, same_conflict, missing_fears, one_persona]),
                      resources_dir=VALID, max_rounds=1)
    assert (report.kept, report.invalid, report.duplicate) == (0, 2, 2)

    assert read(out / "pairs.jsonl") == [{"id": "fast_mover_vs_careful_deliberator",
                                          "conflict": "speed vs deliberation",
                                          "personas": [persona("Fast Mover", "momentum"),
                                                       persona("Careful Deliberator", "caution")]}]
    assert sorted(p.name for p in out.iterdir()) == ["pairs.jsonl"]  # no task rows until dilemmas are drawn


def test_generated_groups_reach_the_dilemma_prompts(tmp_path):
    out = tmp_path / "out"
    good = pair("speed vs deliberation", persona("Fast Mover", "momentum"), persona("Careful Deliberator", "caution"))
    generate("pairs", out, 1, ScriptedBackend([good]), resources_dir=VALID)
    backend = ScriptedBackend([dilemma(f"{NEW_A} Variant {k}.") for k in range(40)])
    generate("dilemmas", out, 40, backend, resources_dir=VALID, max_rounds=1, threshold=1.0)
    assert any("Fast Mover" in p and "speed vs deliberation" in p for p in backend.prompts[0])
    rows = [r for r in read(out / "train.jsonl") if r["group"] == "fast_mover_vs_careful_deliberator"]
    assert rows and rows[0]["personas"] == [persona("Fast Mover", "momentum"),
                                            persona("Careful Deliberator", "caution")]


def test_backend_with_wrong_reply_count_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="^the generation backend returned 0 replies for 2 prompts; it must"):
        generate("dilemmas", tmp_path, 2, lambda prompts: [], resources_dir=VALID)


def test_unknown_kind_or_split_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="^unknown kind 'poems'; use one of dilemmas, pairs$"):
        generate("poems", tmp_path, 1, ScriptedBackend(), resources_dir=VALID)
    with pytest.raises(ValueError, match="^unknown split 'open_ended'; use one of train, eval$"):
        generate("dilemmas", tmp_path, 1, ScriptedBackend(), split="open_ended", resources_dir=VALID)


def test_near_duplicate_threshold_and_json_extraction():
    index = NearDuplicates([SHIPPED_TRAIN_0001], threshold=0.5)
    assert index.is_near_duplicate(SHIPPED_TRAIN_0001.upper())
    assert index.is_near_duplicate(SHIPPED_TRAIN_0001.replace("this year", "next month"))
    assert not index.is_near_duplicate(NEW_A)
    assert first_json_object('x {bad} then {"a": 1} and {"b": 2}') == {"a": 1}
    assert first_json_object("[1, 2]") is None


def test_cli_requires_kind_and_out(capsys):
    with pytest.raises(SystemExit):
        main(["--num", "3"])
    assert "--out" in capsys.readouterr().err

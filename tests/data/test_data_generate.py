"""generate: only rows that parse, validate and are not near-duplicates get appended."""
import json
import pathlib
import shutil

import pytest

from negojax.data.generate import NearDuplicates, first_json_object, generate, main
from negojax.data.scenarios import load_scenarios

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

    rows = read(out / "dilemmas.jsonl")
    assert [r["dilemma"] for r in rows] == [NEW_A, NEW_B]
    assert (report.kept, report.invalid, report.duplicate) == (2, 5, 2)
    assert [r["id"] for r in rows] == ["gen-00000", "gen-00001"]
    groups = load_scenarios(VALID).groups
    assert all(r["tier"] in ("professional", "interpersonal", "everyday") and r["group"] in groups for r in rows)
    assert [len(p) for p in backend.prompts] == [5, 4]  # the second round asks only for what is missing

    # The kept rows are valid training rows: appended to the shipped files they load.
    merged = tmp_path / "merged"
    shutil.copytree(VALID, merged)
    with open(merged / "dilemmas.jsonl", "a", encoding="utf-8") as f:
        f.write((out / "dilemmas.jsonl").read_text(encoding="utf-8"))
    assert len(load_scenarios(merged).tasks["train"]) == 6


def test_a_second_run_appends_and_rejects_what_the_first_kept(tmp_path):
    out = tmp_path / "out"
    generate("dilemmas", out, 1, ScriptedBackend([dilemma(NEW_A)]), resources_dir=VALID)
    report = generate("dilemmas", out, 1, ScriptedBackend([dilemma(NEW_A)], [dilemma(NEW_B)]),
                      resources_dir=VALID)
    assert (report.kept, report.duplicate) == (1, 1)
    assert [r["id"] for r in read(out / "dilemmas.jsonl")] == ["gen-00000", "gen-00001"]


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

    assert read(out / "persona_pairs.jsonl") == [{"id": "fast_mover_vs_careful_deliberator",
                                                  "personas": ["fast_mover", "careful_deliberator"],
                                                  "conflict": "speed vs deliberation"}]
    personas = read(out / "personas.jsonl")
    assert [p["id"] for p in personas] == ["fast_mover", "careful_deliberator"]
    assert all(set(p) == {"id", "name", "core_value", "wants", "fears", "style"} for p in personas)


def test_generated_groups_reach_the_dilemma_prompts(tmp_path):
    out = tmp_path / "out"
    good = pair("speed vs deliberation", persona("Fast Mover", "momentum"), persona("Careful Deliberator", "caution"))
    generate("pairs", out, 1, ScriptedBackend([good]), resources_dir=VALID)
    backend = ScriptedBackend(["no"] * 40)
    generate("dilemmas", out, 40, backend, resources_dir=VALID, max_rounds=1)
    assert any("Fast Mover" in p and "speed vs deliberation" in p for p in backend.prompts[0])


def test_backend_with_wrong_reply_count_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="^the generation backend returned 0 replies for 2 prompts; it must"):
        generate("dilemmas", tmp_path, 2, lambda prompts: [], resources_dir=VALID)


def test_unknown_kind_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="^unknown kind 'poems'; use one of dilemmas, pairs$"):
        generate("poems", tmp_path, 1, ScriptedBackend(), resources_dir=VALID)


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

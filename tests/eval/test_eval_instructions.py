"""The capability guard's instruction following: the shipped IFEval-format prompts against IFEval's registry, and
hand-made answers whose scores are known, checked against the library's own checkers."""
import json

import pytest
from if_verifiable.common import get_loose_transformations
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from negojax.eval.instructions import (PROMPTS_FILE, InstructionPrompt, check_instruction, instruction_prompts,
                                       score_instructions)

TITLE_WORDS_COMMA = InstructionPrompt(
    1, "Propose a split of the paint cost.",
    ("punctuation:no_comma", "detectable_format:title", "length_constraints:number_words"),
    ({}, {}, {"num_words": 12, "relation": "at least"}))
# the comma sits in the middle line, so no loose variant (first or last line dropped) loses it
TWO_OF_THREE = "<<A fair split>>\nWe share the paint cost evenly, and each of us pays half.\nThat keeps it fair."
JSON_DEAL = InstructionPrompt(2, "Reply in JSON.", ("detectable_format:json_format", "keywords:existence"),
                              ({}, {"keywords": ["deal"]}))
PREAMBLE_JSON = 'Here is the JSON you asked for:\n{"deal": "we split the cost"}'


def library_check(instruction_id, kwargs, response):
    """(strict, loose) straight from the library's checker: strict on the response, loose on any of IFEval's
    variants of it."""
    checker = INSTRUCTION_DICT[instruction_id](instruction_id)
    checker.build_description(**kwargs)
    return (checker.check_following(response),
            any(v.strip() and checker.check_following(v) for v in get_loose_transformations(response)))


def test_every_shipped_prompt_is_valid_against_the_registry():
    rows = [json.loads(line) for line in PROMPTS_FILE.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 100 and len({r["key"] for r in rows}) == len(rows)
    for row in rows:
        assert set(row) == {"key", "prompt", "instruction_id_list", "kwargs"}
        assert len(row["instruction_id_list"]) == len(row["kwargs"]) >= 1, row["key"]
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
            assert instruction_id in INSTRUCTION_DICT, (row["key"], instruction_id)
            checker = INSTRUCTION_DICT[instruction_id](instruction_id)
            checker.build_description(**kwargs)  # raises on arguments the checker does not take
            # every argument given, so no checker draws one at random
            assert set(kwargs) == set(checker.get_instruction_args_keys()), (row["key"], instruction_id)
            if instruction_id == "combination:repeat_prompt":
                assert row["prompt"].startswith(kwargs["prompt_to_repeat"])
    used = {i for r in rows for i in r["instruction_id_list"]}
    assert len(used) >= 20, sorted(set(INSTRUCTION_DICT) - used)
    assert [p.key for p in instruction_prompts()] == [r["key"] for r in rows]
    assert len(instruction_prompts(7)) == 7


@pytest.mark.parametrize("instruction_id, kwargs, expected", [
    ("keywords:existance", {"keywords": ["deal"]}, "'keywords:existance' is not an IFEval instruction id"),
    ("length_constraints:number_words", {"num_words": 50}, "takes arguments ['num_words', 'relation']"),
    ("length_constraints:number_words", {"num_words": 50, "relation": "at most"}, "does not accept"),
    ("startend:end_checker", {"end_phrase": "Bye.", "extra": 1}, "does not accept"),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"}, "punkt"),
])
def test_a_row_the_registry_would_not_score_as_written_is_rejected(instruction_id, kwargs, expected):
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("]", r"\]")) as error:
        check_instruction(instruction_id, kwargs)
    assert "\n" not in str(error.value)


def test_two_of_three_instructions_give_instruction_level_two_thirds_and_prompt_level_zero():
    scores = score_instructions([TITLE_WORDS_COMMA], [TWO_OF_THREE], n_resamples=50)
    expected = [library_check(i, k, TWO_OF_THREE) for i, k in zip(TITLE_WORDS_COMMA.instruction_id_list,
                                                                   TITLE_WORDS_COMMA.kwargs)]
    assert expected == [(False, False), (True, True), (True, True)]
    assert scores["n_prompts"] == 1 and scores["n_instructions"] == 3
    assert scores["instruction_strict_accuracy"] == scores["instruction_loose_accuracy"] == pytest.approx(2 / 3)
    assert scores["prompt_strict_accuracy"] == scores["prompt_loose_accuracy"] == 0.0
    assert scores["per_instruction"]["punctuation:no_comma"] == {"strict": 0.0, "loose": 0.0}


def test_a_preamble_line_fails_strict_and_passes_loose():
    scores = score_instructions([JSON_DEAL], [PREAMBLE_JSON], n_resamples=50)
    assert library_check("detectable_format:json_format", {}, PREAMBLE_JSON) == (False, True)
    assert (scores["prompt_strict_accuracy"], scores["prompt_loose_accuracy"]) == (0.0, 1.0)
    assert (scores["instruction_strict_accuracy"], scores["instruction_loose_accuracy"]) == (0.5, 1.0)


def test_accuracies_pool_prompts_and_instructions_as_ifeval_does():
    # 2 prompts, 5 instructions: strict passes 2 + 1, loose 2 + 2; only JSON_DEAL passes whole, and only loose
    scores = score_instructions([TITLE_WORDS_COMMA, JSON_DEAL], [TWO_OF_THREE, PREAMBLE_JSON], n_resamples=200)
    assert scores["n_instructions"] == 5
    assert scores["instruction_strict_accuracy"] == pytest.approx(3 / 5)
    assert scores["instruction_loose_accuracy"] == pytest.approx(4 / 5)
    assert (scores["prompt_strict_accuracy"], scores["prompt_loose_accuracy"]) == (0.0, 0.5)
    low, high = scores["instruction_strict_accuracy_ci"]
    assert 0.0 <= low <= 3 / 5 <= high <= 1.0 and low < high


def test_an_empty_answer_fails_every_instruction():
    scores = score_instructions([TITLE_WORDS_COMMA, JSON_DEAL], ["", "   "], n_resamples=50)
    assert scores["n_instructions"] == 5
    assert scores["instruction_loose_accuracy"] == scores["prompt_loose_accuracy"] == 0.0


def test_shipped_prompts_are_satisfiable_and_language_detection_is_repeatable():
    prompts = {p.key: p for p in instruction_prompts()}
    italian = prompts[47]
    assert italian.instruction_id_list == ("language:response_language", "detectable_format:title")
    assert italian.kwargs[0] == {"language": "it"}
    answers = {
        1: "We could split the cost of repainting: you buy the paint and I do the work.",
        47: "<<Un contratto equo>>\nPropongo di fissare una tariffa chiara, di concordare le scadenze per iscritto "
            "e di chiedere un anticipo prima di iniziare il lavoro.",
    }
    chosen = [prompts[k] for k in answers]
    for _ in range(3):
        scores = score_instructions(chosen, list(answers.values()), n_resamples=20)
        assert scores["prompt_strict_accuracy"] == 1.0
    english = score_instructions([italian], [answers[1]], n_resamples=20)
    assert english["prompt_loose_accuracy"] == 0.0


def test_one_answer_per_prompt():
    with pytest.raises(ValueError, match="one response per prompt; got 1 for 2"):
        score_instructions([TITLE_WORDS_COMMA, JSON_DEAL], ["x"])

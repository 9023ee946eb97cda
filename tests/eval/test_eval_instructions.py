import collections

import pytest

from negojax.eval.instructions import (
    BUILDERS, CHECKERS, Constraint, InstructionPrompt, instruction_prompts, score_instructions,
)

REQUEST = "Write a short essay about remote work policies."

# kind, params, a response that satisfies the constraint, one that does not
CASES = [
    ("word_count_at_least", {"n": 5}, "One two three four five.", "One two three four."),
    ("word_count_at_most", {"n": 4}, "Don't over-think this one.", "One two three four five."),
    ("sentence_count_at_least", {"n": 3}, "First. Second! Third?", "Only one sentence here... and on."),
    ("sentence_count_at_most", {"n": 2}, "Pay 3.5 dollars. Then leave.", "One. Two. Three."),
    ("required_words", {"words": ["office", "team"]}, "The TEAM met at the office.", "The team met at home."),
    ("forbidden_words", {"words": ["very", "thing"]}, "Everything is fine, every day.", "It is a very good plan."),
    ("keyword_frequency", {"word": "honey", "n": 2}, "Honey here, honey there.", "Honey once, honeycomb twice."),
    ("starts_with", {"phrase": "Dear reader"}, "  dear reader, hello.", "Hello, dear reader"),
    ("ends_with", {"phrase": "Thank you for reading."}, "Done. Thank you for reading.\n",
     "Thank you for reading. P.S. bye"),
    ("repeat_request_first", {"request": REQUEST}, REQUEST + "\nRemote work helps.", "Remote work helps. " + REQUEST),
    ("bullet_count", {"n": 3}, "Intro\n* one\n- two\n* three", "* one\n* two\nnot a bullet\n*emphasis*"),
    ("paragraph_count", {"n": 2}, "First para.\nStill first.\n\nSecond para.", "One.\n\nTwo.\n\n  \n\nThree."),
    ("section_count", {"n": 2, "marker": "SECTION"}, "SECTION 1\nfoo\nsection 2\nbar",
     "SECTION 1\nfoo\nSECTION 3\nbar"),
    ("json_format", {}, '```json\n{"a": [1, 2]}\n```', '{"a": [1, 2],}'),
    ("wrapped_in_quotes", {}, ' "All of it quoted." ', '"Half quoted." and not'),
    ("all_lowercase", {}, "all quiet, 100%.", "all quiet, Mostly."),
    ("all_uppercase", {}, "ALL LOUD, 100%!", "ALL LOUD, almost."),
    ("no_commas", {}, "No commas at all.", "Yes, one comma."),
    ("has_title", {}, "<<a fair deal>>\nText.", "<<>> no title, <<broken\n>>"),
    ("has_postscript", {}, "Body.\n\np.s. see you", "Body mentions P.S. mid-line."),
    ("placeholder_count_at_least", {"n": 2}, "Send to [name] at [address].", "Send to [name] at []."),
    ("highlight_count_at_least", {"n": 2}, "This is *key* and *also key*.", "* a bullet\n**bold** *one*"),
]


def test_every_checker_kind_has_cases():
    assert {kind for kind, *_ in CASES} == set(CHECKERS)
    assert {b.kind for b in BUILDERS} == set(CHECKERS)


@pytest.mark.parametrize("kind,params,passing,failing", CASES, ids=[c[0] for c in CASES])
def test_checker_passes_and_fails(kind, params, passing, failing):
    constraint = Constraint(kind, params)
    assert constraint.check(passing)
    assert not constraint.check(failing)


def test_prompt_set_is_large_varied_and_deterministic():
    prompts = instruction_prompts()
    assert len(prompts) >= 100
    assert len({p.prompt for p in prompts}) == len(prompts)
    assert len({p.id for p in prompts}) == len(prompts)
    kinds = collections.Counter(c.kind for p in prompts for c in p.constraints)
    assert set(kinds) == set(CHECKERS) and min(kinds.values()) >= 3
    assert any(len(p.constraints) >= 3 for p in prompts)
    assert instruction_prompts() == prompts
    assert instruction_prompts(seed=1) != prompts


def test_prompts_never_combine_clashing_constraints():
    slots = {b.kind: set(b.slots.split()) for b in BUILDERS}
    for p in instruction_prompts():
        kinds = [c.kind for c in p.constraints]
        assert len(set(kinds)) == len(kinds), p.id
        for i, a in enumerate(kinds):
            for b in kinds[i + 1:]:
                assert not slots[a] & slots[b], (p.id, a, b)


def test_text_a_prompt_asks_to_copy_has_no_commas():
    # starts_with / ends_with / repeat_request_first may share a prompt with no_commas.
    for p in instruction_prompts():
        for c in p.constraints:
            for text in (c.params.get("phrase"), c.params.get("request")):
                assert text is None or "," not in text, p.id


def test_strict_and_loose_accuracy_hand_computed():
    prompts = [
        InstructionPrompt("a", "...", (Constraint("no_commas", {}), Constraint("all_lowercase", {}))),
        InstructionPrompt("b", "...", (Constraint("word_count_at_most", {"n": 3}),)),
        InstructionPrompt("c", "...", (Constraint("has_title", {}), Constraint("no_commas", {}),
                                       Constraint("has_postscript", {}))),
    ]
    responses = ["fine, lowercase", "three words here", "<<t>> no commas\nP.S. done"]
    scores = score_instructions(prompts, responses)
    # a: 1 of 2 (comma), b: 1 of 1, c: 3 of 3 -> strict 2/3, loose 5/6
    assert scores["strict_accuracy"] == pytest.approx(2 / 3)
    assert scores["loose_accuracy"] == pytest.approx(5 / 6)
    assert scores["per_kind"]["no_commas"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one response per prompt"):
        score_instructions(prompts, responses[:2])

"""Instruction following in the style of IFEval, written for this project.

Each prompt carries one or more constraints that a program can verify. A constraint is a checker kind plus its
parameters; each checker is a small pure function `(response, **params) -> bool`. The prompt set is generated
deterministically from task templates x topics x constraint builders (see `instruction_prompts`).

Scores: strict accuracy is the fraction of prompts whose every constraint holds; loose accuracy is the fraction
of all constraints that hold, counted one by one (IFEval's "instruction-level" accuracy).
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Callable, Sequence

import numpy as np

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’\-][A-Za-z0-9]+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_BULLET = re.compile(r"^\s*[*\-•]\s+\S", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")
_HIGHLIGHT = re.compile(r"(?<!\*)\*[^\s*][^\n*]*\*(?!\*)")
_TITLE = re.compile(r"<<[^<>\n]+>>")
_POSTSCRIPT = re.compile(r"^\s*P\.\s?S\.", re.MULTILINE | re.IGNORECASE)
_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL | re.IGNORECASE)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    pieces = _SENTENCE_END.split(text)
    return [p for p in pieces if _WORD.search(p)]


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", text, re.IGNORECASE) is not None


# ---- checkers: pure functions (response, **params) -> bool ----

def word_count_at_least(response: str, n: int) -> bool:
    return len(words(response)) >= n


def word_count_at_most(response: str, n: int) -> bool:
    return len(words(response)) <= n


def sentence_count_at_least(response: str, n: int) -> bool:
    return len(sentences(response)) >= n


def sentence_count_at_most(response: str, n: int) -> bool:
    return len(sentences(response)) <= n


def required_words(response: str, words: Sequence[str]) -> bool:
    return all(_has_word(response, w) for w in words)


def forbidden_words(response: str, words: Sequence[str]) -> bool:
    return not any(_has_word(response, w) for w in words)


def keyword_frequency(response: str, word: str, n: int) -> bool:
    """`word` appears at least n times (whole words, any case)."""
    pattern = rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])"
    return len(re.findall(pattern, response, re.IGNORECASE)) >= n


def starts_with(response: str, phrase: str) -> bool:
    return response.strip().lower().startswith(phrase.lower())


def ends_with(response: str, phrase: str) -> bool:
    return response.strip().lower().endswith(phrase.lower())


def repeat_request_first(response: str, request: str) -> bool:
    return response.strip().startswith(request.strip())


def bullet_count(response: str, n: int) -> bool:
    """Exactly n Markdown bullet lines ('* ', '- ' or '• ')."""
    return len(_BULLET.findall(response)) == n


def paragraph_count(response: str, n: int) -> bool:
    """Exactly n paragraphs separated by blank lines."""
    return len(paragraphs(response)) == n


def section_count(response: str, n: int, marker: str) -> bool:
    """Exactly n sections, each opened by a line starting '<marker> <k>' with k = 1..n in order."""
    found = re.findall(rf"^\s*{re.escape(marker)}\s+(\d+)", response, re.MULTILINE | re.IGNORECASE)
    return [int(k) for k in found] == list(range(1, n + 1))


def json_format(response: str) -> bool:
    """The whole response is one JSON value (a ```json fence around it is allowed)."""
    text = response.strip()
    fenced = _FENCE.match(text)
    try:
        json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return False
    return True


def wrapped_in_quotes(response: str) -> bool:
    text = response.strip()
    return len(text) >= 2 and text.startswith('"') and text.endswith('"')


def all_lowercase(response: str) -> bool:
    return any(c.isalpha() for c in response) and response == response.lower()


def all_uppercase(response: str) -> bool:
    return any(c.isalpha() for c in response) and response == response.upper()


def no_commas(response: str) -> bool:
    return "," not in response


def has_title(response: str) -> bool:
    """A title wrapped in double angular brackets, such as <<a fair deal>>."""
    return _TITLE.search(response) is not None


def has_postscript(response: str) -> bool:
    """A line that starts with P.S. (any case, so it also fits all-lowercase answers)."""
    return _POSTSCRIPT.search(response) is not None


def placeholder_count_at_least(response: str, n: int) -> bool:
    """At least n square-bracket placeholders such as [address]."""
    return len(_PLACEHOLDER.findall(response)) >= n


def highlight_count_at_least(response: str, n: int) -> bool:
    """At least n sections highlighted with single asterisks, such as *key point*."""
    return len(_HIGHLIGHT.findall(response)) >= n


CHECKERS: dict[str, Callable[..., bool]] = {
    f.__name__: f
    for f in (
        word_count_at_least, word_count_at_most, sentence_count_at_least, sentence_count_at_most,
        required_words, forbidden_words, keyword_frequency, starts_with, ends_with, repeat_request_first,
        bullet_count, paragraph_count, section_count, json_format, wrapped_in_quotes, all_lowercase,
        all_uppercase, no_commas, has_title, has_postscript, placeholder_count_at_least, highlight_count_at_least,
    )
}


@dataclasses.dataclass(frozen=True)
class Constraint:
    kind: str
    params: dict

    def check(self, response: str) -> bool:
        return CHECKERS[self.kind](response, **self.params)


@dataclasses.dataclass(frozen=True)
class InstructionPrompt:
    id: str
    prompt: str
    constraints: tuple[Constraint, ...]


# ---- the prompt set ----

TASKS = (
    "Write a short essay about {topic}.",
    "Write an email to a colleague about {topic}.",
    "Explain {topic} to a twelve-year-old.",
    "Give practical advice to a small town council on {topic}.",
    "Write a blog post introduction about {topic}.",
    "Describe the main arguments for and against {topic}.",
    "Write a short speech for a community meeting about {topic}.",
    "Summarise what a newcomer should know about {topic}.",
)

# (topic, words a good answer can naturally use, so required-word constraints stay fair)
TOPICS = (
    ("sharing a kitchen with roommates", ("schedule", "clean")),
    ("remote work policies", ("office", "team")),
    ("keeping bees in a city", ("honey", "neighbours")),
    ("reducing food waste at home", ("leftovers", "plan")),
    ("choosing a family holiday destination", ("budget", "children")),
    ("privacy on social media", ("data", "settings")),
    ("building a bicycle lane downtown", ("safety", "traffic")),
    ("learning a second language as an adult", ("practice", "memory")),
    ("splitting chores in a household", ("fair", "time")),
    ("adopting a rescue dog", ("shelter", "training")),
    ("a four-day work week", ("productivity", "rest")),
    ("community gardens", ("soil", "volunteers")),
    ("saving for retirement", ("savings", "interest")),
    ("noise rules in apartment buildings", ("quiet", "tenants")),
    ("school uniforms", ("students", "cost")),
    ("public libraries in the digital age", ("books", "access")),
    ("electric cars", ("battery", "charging")),
    ("caring for an elderly parent", ("support", "health")),
    ("planning a wedding on a budget", ("guests", "venue")),
    ("volunteering abroad", ("local", "skills")),
    ("screen time for teenagers", ("phone", "sleep")),
    ("starting a neighbourhood book club", ("members", "discussion")),
    ("recycling plastics", ("waste", "sorting")),
    ("open-plan offices", ("focus", "collaboration")),
    ("tipping in restaurants", ("service", "wages")),
)

FILLER_WORDS = ("very", "really", "basically", "actually", "literally", "stuff", "thing")
# No commas in these, so they combine with the no-commas constraint.
CLOSINGS = ("Is there anything else I can help with?", "Let me know what you think.", "Thank you for reading.")
OPENINGS = ("Here is my answer:", "In short:", "Dear reader")


@dataclasses.dataclass(frozen=True)
class _Builder:
    """One constraint kind in the prompt set: `slots` name the parts of an answer it governs, so no two
    constraints that clash (say JSON and a P.S.) share a prompt; `sample` draws its params; `text` is the
    instruction sentence, formatted with those params."""
    slots: str
    kind: str
    sample: Callable[[np.random.Generator, str, tuple], dict]
    text: str


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _n(*options: int):
    return lambda rng, request, topic: {"n": _pick(rng, options)}


def _none(rng, request, topic):
    return {}


BUILDERS = (
    _Builder("length", "word_count_at_least", _n(120, 150, 200), "Answer with at least {n} words."),
    _Builder("length", "word_count_at_most", _n(40, 60, 80), "Answer with at most {n} words."),
    _Builder("length", "sentence_count_at_least", _n(6, 8, 10), "Your answer must contain at least {n} sentences."),
    _Builder("length structure", "sentence_count_at_most", _n(2, 3, 4),
             "Your answer must contain no more than {n} sentences."),
    _Builder("required", "required_words", lambda rng, request, topic: {"words": list(topic[1])},
             'Include the words "{words[0]}" and "{words[1]}" in your answer.'),
    _Builder("forbidden", "forbidden_words",
             lambda rng, request, topic: {"words": sorted(rng.choice(FILLER_WORDS, size=2, replace=False).tolist())},
             'Do not use the words "{words[0]}" or "{words[1]}".'),
    _Builder("required", "keyword_frequency",
             lambda rng, request, topic: {"word": topic[1][0], "n": _pick(rng, (2, 3))},
             'The word "{word}" should appear at least {n} times.'),
    _Builder("start", "starts_with", lambda rng, request, topic: {"phrase": _pick(rng, OPENINGS)},
             'Start your answer with the exact phrase "{phrase}".'),
    _Builder("end", "ends_with", lambda rng, request, topic: {"phrase": _pick(rng, CLOSINGS)},
             'Finish your answer with the exact phrase "{phrase}" and nothing after it.'),
    _Builder("start casing", "repeat_request_first", lambda rng, request, topic: {"request": request},
             "First repeat the request above word for word without change, then give your answer "
             "(the request to repeat does not include this sentence)."),
    _Builder("structure", "bullet_count", _n(3, 4, 5),
             'Your answer must contain exactly {n} bullet points, using Markdown bullets such as "* This is a point."'),
    _Builder("structure", "paragraph_count", _n(2, 3, 4),
             "Write exactly {n} paragraphs, separated from each other by a blank line."),
    _Builder("structure", "section_count", lambda rng, request, topic: {"n": _pick(rng, (2, 3)), "marker": "SECTION"},
             'Your answer must have {n} sections. Begin each section with "{marker} X", where X is the section '
             "number starting at 1."),
    _Builder("structure start end title commas postscript quotes", "json_format", _none,
             "Wrap your entire output in JSON format; the whole answer must be valid JSON."),
    _Builder("structure start end quotes", "wrapped_in_quotes", _none,
             "Wrap your entire answer in double quotation marks."),
    _Builder("casing", "all_lowercase", _none,
             "Your entire answer must be in lowercase letters; no capital letters are allowed."),
    _Builder("casing", "all_uppercase", _none, "Your entire answer must be in English and in capital letters only."),
    _Builder("commas", "no_commas", _none, "Do not use any commas in your answer."),
    _Builder("title", "has_title", _none,
             "Give your answer a title wrapped in double angular brackets, such as <<my title>>."),
    _Builder("end postscript", "has_postscript", _none,
             "At the end of your answer, add a postscript starting with P.S."),
    _Builder("placeholder", "placeholder_count_at_least", _n(2, 3),
             "Include at least {n} placeholders in square brackets, such as [name]."),
    _Builder("highlight", "highlight_count_at_least", _n(2, 3),
             "Highlight at least {n} parts of your answer with markdown, i.e. *highlighted part*."),
)


def instruction_prompts(n: int = 120, *, seed: int = 0) -> list[InstructionPrompt]:
    """`n` prompts; prompt i's first constraint cycles through every checker kind so each is well represented,
    and up to two more are drawn (seeded) among those whose slots do not clash."""
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        request = TASKS[(i // len(TOPICS) + i) % len(TASKS)].format(topic=topic[0])
        chosen = [BUILDERS[i % len(BUILDERS)]]
        for _ in range(int(rng.integers(0, 3))):
            used = set().union(*(c.slots.split() for c in chosen))
            free = [b for b in BUILDERS if used.isdisjoint(b.slots.split())]
            if free:
                chosen.append(_pick(rng, free))
        constraints = tuple(Constraint(b.kind, b.sample(rng, request, topic)) for b in chosen)
        texts = [b.text.format(**c.params) for b, c in zip(chosen, constraints)]
        prompts.append(InstructionPrompt(id=f"if-{i:03d}", prompt=" ".join([request] + texts), constraints=constraints))
    return prompts


def score_instructions(prompts: Sequence[InstructionPrompt], responses: Sequence[str]) -> dict:
    """Strict (every constraint of a prompt holds) and loose (per constraint) accuracy, plus per-kind accuracy."""
    if len(prompts) != len(responses):
        raise ValueError(f"score_instructions needs one response per prompt; got {len(responses)} for {len(prompts)}")
    results = [[c.check(r) for c in p.constraints] for p, r in zip(prompts, responses)]
    flat = [(c.kind, ok) for p, res in zip(prompts, results) for c, ok in zip(p.constraints, res)]
    per_kind: dict[str, list[bool]] = {}
    for kind, ok in flat:
        per_kind.setdefault(kind, []).append(ok)
    return {
        "n_prompts": len(prompts),
        "n_constraints": len(flat),
        "strict_accuracy": float(np.mean([all(res) for res in results])) if results else float("nan"),
        "loose_accuracy": float(np.mean([ok for _, ok in flat])) if flat else float("nan"),
        "per_kind": {k: float(np.mean(v)) for k, v in sorted(per_kind.items())},
    }

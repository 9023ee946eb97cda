"""Exact-answer reasoning: arithmetic word problems generated with known answers, and gsm8k where prepared.

Answers are read as the last number in a response ("$1,250.50" reads as 1250.5), so a model may show its work
as long as it ends with the answer.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Sequence

import numpy as np

from negojax.eval.metrics import bootstrap_ci

# a minus sign counts only when it is not a hyphen between words or numbers ("2024-2025" ends in 2025)
_NUMBER = re.compile(r"(?:(?<![\w-])-)?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")

ANSWER_INSTRUCTION = "Solve the problem. End your answer with the final number alone on the last line."


@dataclasses.dataclass(frozen=True)
class ReasoningProblem:
    id: str
    template: str
    question: str
    answer: float


def extract_answer(response: str) -> float | None:
    """The last number in the response, without "$" and thousands separators; None when there is none."""
    found = _NUMBER.findall(response)
    if not found:
        return None
    return float(re.sub(r"[$,\s]", "", found[-1]))


def _shopping(rng: np.random.Generator) -> tuple[str, float]:
    item_a, item_b = rng.choice(["notebooks", "pens", "apples", "mugs", "candles", "tickets"], size=2, replace=False)
    count_a, count_b = (int(x) for x in rng.integers(2, 13, size=2))
    price_a, price_b = (int(x) for x in rng.integers(2, 40, size=2))
    paid = 50 * int(np.ceil((count_a * price_a + count_b * price_b + 1) / 50))
    question = (f"Lena buys {count_a} {item_a} at ${price_a} each and {count_b} {item_b} at ${price_b} each. "
                f"She pays with ${paid:,}. How many dollars of change does she get?")
    return question, paid - count_a * price_a - count_b * price_b


def _rate_time(rng: np.random.Generator) -> tuple[str, float]:
    rate, minutes, workers = int(rng.integers(3, 20)), int(rng.integers(4, 30)), int(rng.integers(2, 6))
    pages = rate * minutes * workers
    question = (f"One printer prints {rate} pages per minute. A print shop runs {workers} such printers at once. "
                f"How many minutes will it take to print {pages:,} pages?")
    return question, minutes


def _ages(rng: np.random.Generator) -> tuple[str, float]:
    child, factor = int(rng.integers(3, 15)), int(rng.integers(2, 5))
    extra, years = int(rng.integers(5, 20)), int(rng.integers(2, 20))
    question = (f"Sam is {child} years old. His aunt's age is {extra} more than {factor} times Sam's age. "
                f"How old will his aunt be in {years} years?")
    return question, child * factor + extra + years


def _remainders(rng: np.random.Generator) -> tuple[str, float]:
    box, boxes = int(rng.integers(4, 13)), int(rng.integers(5, 40))
    left = int(rng.integers(1, box))
    eggs = box * boxes + left
    question = (f"A farm collects {eggs:,} eggs and packs them into cartons of {box}. Only full cartons are sold. "
                f"How many eggs are left over?")
    return question, left


def _percentages(rng: np.random.Generator) -> tuple[str, float]:
    price = 20 * int(rng.integers(2, 60))
    discount = 5 * int(rng.integers(1, 16))
    tax = 10
    sale = price * (100 - discount) / 100
    question = (f"A bicycle costs ${price:,}. It is on sale for {discount}% off, and then a {tax}% sales tax is "
                f"added to the sale price. What is the final price in dollars?")
    return question, round(sale * (100 + tax) / 100, 2)


def _work_split(rng: np.random.Generator) -> tuple[str, float]:
    people, hours = int(rng.integers(2, 7)), int(rng.integers(2, 9))
    total = people * hours * int(rng.integers(5, 25))
    question = (f"{people} volunteers share the work of folding {total:,} leaflets equally. Each volunteer works "
                f"for {hours} hours. How many leaflets does each volunteer fold per hour?")
    return question, total / people / hours


TEMPLATES: dict[str, Callable[[np.random.Generator], tuple[str, float]]] = {
    "shopping": _shopping,
    "rate_time": _rate_time,
    "ages": _ages,
    "remainders": _remainders,
    "percentages": _percentages,
    "work_split": _work_split,
}


def reasoning_problems(n: int = 120, *, seed: int = 0) -> list[ReasoningProblem]:
    """`n` distinct problems cycling through the templates, numbers drawn from a seeded Generator."""
    rng = np.random.default_rng(seed)
    names = list(TEMPLATES)
    problems, seen = [], set()
    for i in range(n):
        name = names[i % len(names)]
        question, answer = TEMPLATES[name](rng)
        while question in seen:
            question, answer = TEMPLATES[name](rng)
        seen.add(question)
        problems.append(ReasoningProblem(id=f"arith-{i:03d}", template=name, question=question, answer=float(answer)))
    return problems


def reasoning_prompt(problem: ReasoningProblem) -> str:
    return f"{problem.question}\n{ANSWER_INSTRUCTION}"


def score_reasoning(problems: Sequence[ReasoningProblem], responses: Sequence[str], *,
                    n_resamples: int = 1000, seed: int = 0) -> dict:
    """Exact-match accuracy with its 95% bootstrap interval."""
    if len(problems) != len(responses):
        raise ValueError(f"score_reasoning needs one response per problem; got {len(responses)} for {len(problems)}")
    correct = []
    for problem, response in zip(problems, responses):
        got = extract_answer(response)
        correct.append(got is not None and abs(got - problem.answer) < 1e-6)
    return {"n": len(problems), "accuracy": float(np.mean(correct)) if correct else float("nan"),
            "accuracy_ci": list(bootstrap_ci(np.asarray(correct, float), n_resamples=n_resamples, seed=seed))}


def gsm8k_answer(solution: str) -> float:
    """gsm8k solutions end with '#### <answer>'."""
    return float(solution.rsplit("####", 1)[1].strip().replace(",", ""))


def load_gsm8k(
    data_dir: str, *, split: str = "test", limit: int | None = None
) -> tuple[list[ReasoningProblem], str | None]:
    """gsm8k from a TFDS data dir where a user prepared it (array_record, read with `as_data_source`, so no
    TensorFlow); never downloads. Returns (problems, None), or ([], "skipped: ...") saying why not."""
    try:
        import tensorflow_datasets as tfds

        source = tfds.builder("gsm8k", data_dir=os.fspath(data_dir)).as_data_source(split=split)
        rows = [source[i] for i in range(len(source) if limit is None else min(limit, len(source)))]
    except Exception as error:  # any failure here means "not usable here", never a reason to stop an evaluation
        return [], f"skipped: gsm8k not prepared in {data_dir} ({type(error).__name__})"
    text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)  # noqa: E731
    problems = [
        ReasoningProblem(id=f"gsm8k-{split}-{i:04d}", template="gsm8k", question=text(row["question"]),
                         answer=gsm8k_answer(text(row["answer"])))
        for i, row in enumerate(rows)
    ]
    return problems, None

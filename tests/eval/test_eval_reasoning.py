import re

import numpy as np
import pytest

from negojax.eval.reasoning import (
    TEMPLATES, ReasoningProblem, extract_answer, gsm8k_answer, load_gsm8k, reasoning_problems, reasoning_prompt,
    score_reasoning,
)


def numbers(question):
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*", question)]


# Each template's answer worked out again from the numbers printed in its question.
SOLVERS = {
    "shopping": lambda count_a, price_a, count_b, price_b, paid: paid - count_a * price_a - count_b * price_b,
    "rate_time": lambda rate, workers, pages: pages / (rate * workers),
    "ages": lambda child, extra, factor, years: child * factor + extra + years,
    "remainders": lambda eggs, box: eggs % box,
    "percentages": lambda price, discount, tax: round(price * (1 - discount / 100) * (1 + tax / 100), 2),
    "work_split": lambda people, leaflets, hours: leaflets / people / hours,
}


def test_generated_answers_are_right():
    problems = reasoning_problems(120)
    assert {p.template for p in problems} == set(TEMPLATES) == set(SOLVERS)
    for p in problems:
        assert p.answer == pytest.approx(SOLVERS[p.template](*numbers(p.question))), p.question


def test_hand_checked_problems():
    shopping = ("Lena buys 4 candles at $3 each and 5 mugs at $4 each. She pays with $50. "
                "How many dollars of change does she get?")
    assert SOLVERS["shopping"](*numbers(shopping)) == 18  # 50 - 12 - 20
    percentages = ("A bicycle costs $760. It is on sale for 45% off, and then a 10% sales tax is added to the "
                   "sale price. What is the final price in dollars?")
    assert SOLVERS["percentages"](*numbers(percentages)) == pytest.approx(459.8)  # 760 * 0.55 = 418, * 1.1


def test_problem_set_is_seeded_and_varied():
    problems = reasoning_problems(120, seed=0)
    assert problems == reasoning_problems(120, seed=0)
    assert problems != reasoning_problems(120, seed=1)
    assert len({p.question for p in problems}) == len(problems)
    assert reasoning_prompt(problems[0]).startswith(problems[0].question)


@pytest.mark.parametrize("response,expected", [
    ("So the change is $1,250.50.", 1250.5),
    ("Step: 3 + 4 = 7\nAnswer: 42", 42.0),
    ("The numbers 3, 4 and 5; the answer is 5", 5.0),
    ("It drops to -7 degrees", -7.0),
    ("Between 2024-2025", 2025.0),
    ("12.\n", 12.0),
    ("$ 30", 30.0),
    ("no number at all", None),
])
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


def test_score_reasoning():
    problems = [ReasoningProblem("a", "t", "q", 18.0), ReasoningProblem("b", "t", "q", 459.8),
                ReasoningProblem("c", "t", "q", 7.0)]
    scores = score_reasoning(problems, ["Change: $18", "Final price: $459.80", "I do not know"])
    # NumPy reference of the percentile bootstrap over the three right/wrong outcomes
    resampled = np.array([1.0, 1.0, 0.0])[np.random.default_rng(0).integers(0, 3, size=(1000, 3))].mean(axis=1)
    assert scores == {"n": 3, "accuracy": pytest.approx(2 / 3),
                      "accuracy_ci": pytest.approx(list(np.percentile(resampled, [2.5, 97.5])))}


def test_gsm8k_answer_format():
    assert gsm8k_answer("She has 3 + 4 = <<3+4=7>>7 apples.\n#### 1,007") == 1007.0


def test_gsm8k_skips_with_a_clear_message_when_not_prepared(tmp_path):
    problems, skipped = load_gsm8k(str(tmp_path))
    assert problems == []
    assert skipped.startswith(f"skipped: gsm8k not prepared in {tmp_path}")


def test_gsm8k_loads_from_a_prepared_array_record_dir(tmp_path):
    # A tiny gsm8k prepared the way TFDS prepares it (array_record), without TensorFlow.
    tfds = pytest.importorskip("tensorflow_datasets")

    with tfds.core.registered.skip_registration():
        class Gsm8k(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.0.0")

            def _info(self):
                text = tfds.features.Text()
                features = tfds.features.FeaturesDict({"question": text, "answer": text})
                return tfds.core.DatasetInfo(builder=self, features=features)

            def _split_generators(self, dl_manager):
                return {"test": self._generate_examples()}

            def _generate_examples(self):
                for i in range(3):
                    yield i, {"question": f"What is {i} + 1000?", "answer": f"{i} + 1000\n#### {i + 1000:,}"}

    Gsm8k(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    problems, skipped = load_gsm8k(str(tmp_path), limit=2)
    assert skipped is None
    assert len(problems) == 2
    assert all(p.answer == 1000 + int(p.question.split()[2]) for p in problems)
    assert all(p.template == "gsm8k" for p in problems)

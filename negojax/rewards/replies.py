"""Reading a judge's free-text reply: the first answer from the question's vocabulary.

Values use the units of `Judge.evaluate`: the digit for CA_SCORE, 1.0 / 0.0 for the first / second
answer of a two-answer question. None means the reply is unreadable (the caller re-asks once).
"""
import re

from negojax.rewards import rubric

_DIGIT = re.compile(r"(?<!\d)[0-5](?!\d)")
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
# A bare leading letter, or one named as the answer ("Answer: B", "Response A is better"); a
# capital A elsewhere is usually the article, so it is not read.
_LEADING_LETTER = re.compile(r"^\W*([AB])\b")
_NAMED_LETTER = re.compile(r"(?i:answer|response|option|choice)\s*:?\s*([AB])\b")


def parse_reply(question: rubric.Question, text: str) -> float | None:
    if question == rubric.CA_SCORE:
        match = _DIGIT.search(text)
        return None if match is None else float(match.group(0))
    if question == rubric.AGREEMENT:
        match = _YES_NO.search(text)
        return None if match is None else float(match.group(1).lower() == "yes")
    if question == rubric.PREFERENCE:
        match = _LEADING_LETTER.search(text) or _NAMED_LETTER.search(text)
        return None if match is None else float(match.group(1) == "A")
    raise ValueError(f"no reply parser for question {question.name!r}")

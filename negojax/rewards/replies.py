"""Reading a judge's free-text reply: the first answer from the question's vocabulary, or for
CA_SCORE the reply's one number.

Values use the units of `Judge.evaluate`: the digit for CA_SCORE, 1.0 / 0.0 for the first / second
answer of a two-answer question. None means the reply is unreadable (the caller re-asks once).
"""
import re

from negojax.rewards import rubric

# A score is read only from a reply with exactly one number in it, an unsigned digit 0-5:
# "-3", "3.5", "11" or "3 or 4" is no score (a lenient reading took the 3 of "-3"). The
# denominator of "4/5" or "4 out of 5" is not a second number.
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_OUT_OF_FIVE = re.compile(r"\s*(?:/|\bout\s+of\b)\s*5(?!\d|\.\d)", re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
# A bare leading letter, or one named as the answer ("Answer: B", "Response A is better"); a
# capital A elsewhere is usually the article, so it is not read.
_LEADING_LETTER = re.compile(r"^\W*([AB])\b")
_NAMED_LETTER = re.compile(r"(?i:answer|response|option|choice)\s*:?\s*([AB])\b")


def parse_reply(question: rubric.Question, text: str) -> float | None:
    if question == rubric.CA_SCORE:
        numbers = _NUMBER.findall(_OUT_OF_FIVE.sub("", text))
        if len(numbers) != 1 or numbers[0] not in question.answers:
            return None
        return float(numbers[0])
    if question == rubric.AGREEMENT:
        match = _YES_NO.search(text)
        return None if match is None else float(match.group(1).lower() == "yes")
    if question == rubric.PREFERENCE:
        match = _LEADING_LETTER.search(text) or _NAMED_LETTER.search(text)
        return None if match is None else float(match.group(1) == "A")
    raise ValueError(f"no reply parser for question {question.name!r}")

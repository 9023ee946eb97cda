"""Reading a CA score from a judge's free-text reply: one number, an unsigned digit 0-5, or
nothing (None: the judge re-asks once, then counts the sample unreadable)."""
import pytest

from negojax.rewards import rubric
from negojax.rewards.replies import parse_reply


@pytest.mark.parametrize("reply, score", [
    ("5", 5.0),
    ("Score: 4", 4.0),
    ("I give it a 4.", 4.0),
    ("4/5", 4.0),             # the denominator is no second number
    ("4 out of 5", 4.0),
    ("-3", None),             # signed: not the 3 inside it
    ("+3", None),
    ("3.5", None),            # a decimal is no digit 0-5
    ("11", None),
    ("3 or 4", None),         # two numbers: no telling which
    ("4/10", None),           # out of 10 is another scale, two numbers
    ("Quite good overall.", None),
])
def test_a_score_is_the_replys_one_unsigned_digit(reply, score):
    assert parse_reply(rubric.CA_SCORE, reply) == score

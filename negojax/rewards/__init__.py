"""Judges and rewards: agreement detection, Collective-Agency scoring, reward composition.

Judge reliability statistics live in `negojax.rewards.reliability` (also a command).
"""
from negojax.rewards.composition import (COMPONENTS, REWARD_MODES, compose_rewards,
                                         score_final_solutions, seat_rewards)
from negojax.rewards.ensemble import VOTES, JudgeEnsemble
from negojax.rewards.http_judge import HttpJudge, JudgeUnreachable
from negojax.rewards.judge import FALLBACKS, Judge
from negojax.rewards.local_judge import LocalJudge
from negojax.rewards.rubric import (AGREEMENT, CA_RUBRIC, CA_SCORE, PREFERENCE, Question,
                                    agreement_messages, ca_score_messages, format_persona,
                                    preference_messages)
from negojax.rewards.scoring import binary_probability, expected_score

__all__ = [
    "AGREEMENT", "CA_RUBRIC", "CA_SCORE", "COMPONENTS", "FALLBACKS", "PREFERENCE",
    "REWARD_MODES", "VOTES",
    "HttpJudge",
    "Judge", "JudgeEnsemble", "JudgeUnreachable", "LocalJudge", "Question", "agreement_messages",
    "binary_probability", "ca_score_messages", "compose_rewards", "expected_score",
    "format_persona", "preference_messages", "score_final_solutions", "seat_rewards",
]

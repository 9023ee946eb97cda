"""Negotiation self-play: persona prompts, the lockstep N-seat turn loop, the opponent seats,
the single-agent baseline's one-answer rollout, token bookkeeping for training, and the HTML view of transcripts (`python -m
negojax.negotiation.view RUN_DIR`)."""
from negojax.negotiation.agreement import (AgreementFn, JudgeAgreement, MarkerAgreement,
                                           agreement_check)
from negojax.negotiation.config import NegotiationConfig, as_config
from negojax.negotiation.engine import NegotiationEngine, derived_seed
from negojax.negotiation.records import DialogueState, Rollout, TrainSequence, Turn
from negojax.negotiation.seats import OPPONENT_MODES, POLICY_SEATS, Opponents
from negojax.negotiation.single_agent import SETTINGS, SingleAgentEngine

__all__ = ["AgreementFn", "DialogueState", "JudgeAgreement", "MarkerAgreement",
           "NegotiationConfig", "NegotiationEngine", "OPPONENT_MODES", "Opponents", "POLICY_SEATS", "Rollout",
           "SETTINGS", "SingleAgentEngine", "TrainSequence", "Turn", "agreement_check", "as_config", "derived_seed"]

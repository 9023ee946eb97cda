"""Negotiation self-play: persona prompts, the lockstep N-seat turn loop, token bookkeeping for
training, and transcripts (`python -m negojax.negotiation.view RUN_DIR` renders them as HTML)."""
from negojax.negotiation.agreement import (AgreementFn, JudgeAgreement, MarkerAgreement,
                                           agreement_check)
from negojax.negotiation.config import NegotiationConfig, as_config, prompts_per_batch
from negojax.negotiation.engine import NegotiationEngine, derived_seed
from negojax.negotiation.records import DialogueState, Rollout, TrainSequence, Turn
from negojax.negotiation.seats import Seats, seat_params_for
from negojax.negotiation.transcripts import append_transcripts, read_transcripts

__all__ = ["AgreementFn", "DialogueState", "JudgeAgreement", "MarkerAgreement",
           "NegotiationConfig", "NegotiationEngine", "Rollout", "Seats", "TrainSequence", "Turn",
           "agreement_check", "append_transcripts", "as_config", "derived_seed",
           "prompts_per_batch", "read_transcripts", "seat_params_for"]

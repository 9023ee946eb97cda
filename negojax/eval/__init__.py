"""Evaluation: conflict-resolution metrics, pairwise CA win rates, a general-capability guard and the report.

Everything here takes plain callables and plain data, so it works with any model backend the caller wires in.
"""
from negojax.eval.driver import capability_guard, evaluate_conflicts, win_rates
from negojax.eval.instructions import instruction_prompts, score_instructions
from negojax.eval.metrics import bootstrap_ci, conflict_metrics, win_rate
from negojax.eval.reasoning import load_gsm8k, reasoning_problems, score_reasoning
from negojax.eval.report import write_report

__all__ = ["bootstrap_ci", "capability_guard", "conflict_metrics", "evaluate_conflicts",
           "instruction_prompts", "load_gsm8k", "reasoning_problems", "score_instructions",
           "score_reasoning", "win_rate", "win_rates", "write_report"]

"""Evaluation: conflict-resolution metrics, pairwise CA win rates, a general-capability guard and the report.

Everything here takes plain callables and plain data, so it works with any model backend the caller wires in.
"""

"""The one shape-bucketing policy: every length and row count a jitted program sees is rounded
up here, so a run compiles a bounded number of programs (sampler, train batch and train step).
"""
from __future__ import annotations


def bucket(n: int, minimum: int = 16) -> int:
    """Lengths: the smallest power of two >= max(n, minimum) up to 256, then the next multiple
    of 128.

    Past 256 a power of two wastes up to half of every prefill and of every decode step's
    attention over the cache (a 400-token persona prompt plus a 48-token reply took a
    1024-slot cache); multiples of 128 keep the number of compiled shapes small.
    """
    size = minimum
    while size < n and size < 256:
        size *= 2
    return size if size >= n else -(-n // 128) * 128


def batch_bucket(n: int) -> int:
    """Rows a batch pads to: even counts up to 16, then multiples of 8. Every padding row costs
    a full row of prefill and attention (6 dialogues padded to 8 made a 6-row prefill 20-25%
    slower), while the number of compiled batch shapes stays small."""
    if n <= 1:
        return 1
    return -(-n // 2) * 2 if n <= 16 else -(-n // 8) * 8


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple

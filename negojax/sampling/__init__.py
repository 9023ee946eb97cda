"""Batched KV-cache sampling: `sample` for one shot, `Session` for multi-turn continuation."""
from negojax.sampling.rules import SamplingParams, filtered_logits, sample_tokens
from negojax.sampling.prefix_tree import prefix_tree
from negojax.sampling.sampler import Generation, Session, prefill, sample

__all__ = ["Generation", "SamplingParams", "Session", "filtered_logits", "prefill",
           "prefix_tree", "sample", "sample_tokens"]

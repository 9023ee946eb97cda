"""Batched KV-cache sampling: `sample` for one shot, `Session` for multi-turn continuation."""
from negojax.sampling.rules import SamplingParams, filtered_logits, sample_tokens
from negojax.sampling.sampler import Generation, Session, bucket, sample

__all__ = ["Generation", "SamplingParams", "Session", "bucket", "filtered_logits", "sample",
           "sample_tokens"]

"""An in-process judge: any negojax model, scored from the logits of the answer tokens.

Each batch of judge prompts (chat-templated, ending in the assistant generation prompt) is
prefilled as a tree of shared openings (`sampling.prefill`): the judge role and rubric once, each
dilemma with its personas once, then every row's own turns or solution. Only the last real
position of each row is unembedded, and the logits of the allowed answers give the judgement
directly: the expected value over "0".."5" for the CA score, the two-way probability for
yes/no and A/B. There is no text to parse, so a LocalJudge never returns NaN.

An answer counts in two spellings, as written and capitalised ("yes" and "Yes"; "A" and digits
are their own capitalisation); its logit is the logsumexp of the logits of the first token of
each spelling, so its probability is the sum over both. No leading-space variants: the
generation prompt ends the line before the answer.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from negojax.models import transformer
from negojax.rewards import judge, rubric, scoring
from negojax.sampling.sampler import prefill


def answer_token_ids(tokenizer, answers) -> np.ndarray:
    """int32 [A, M]: the first token of each spelling of each answer, padded with -1."""
    rows = []
    for answer in answers:
        ids = []
        for spelling in dict.fromkeys((answer, answer.capitalize())):
            first = tokenizer.encode(spelling)[:1]
            if first and first[0] not in ids:
                ids.append(first[0])
        rows.append(ids)
    width = max(len(ids) for ids in rows)
    return np.array([ids + [-1] * (width - len(ids)) for ids in rows], np.int32)


@functools.partial(jax.jit, static_argnames=("reduce",))
def _answer_values(logits, answer_ids, reduce: str):
    """logits [B, V] at each prompt's last token -> float32 [B]: the expected score, or the
    probability of the first answer."""
    spelled = jnp.take(logits, jnp.maximum(answer_ids, 0), axis=-1)      # [B, A, M]
    spelled = jnp.where(answer_ids >= 0, spelled, -jnp.inf)
    answer_logits = jax.nn.logsumexp(spelled, axis=-1)                    # [B, A]
    if reduce == "expected":
        return scoring.expected_score(answer_logits)
    return scoring.binary_probability(answer_logits[:, 0], answer_logits[:, 1])


class LocalJudge(judge.Judge):
    """A negojax Model as judge (default: the embedded SmolLM2-135M-Instruct), frozen.

    rules: place the batch (and, if the model was loaded without them, the params) on a mesh;
    defaults to the model's own rules. batch_size: most rows per prefill (bounds memory: a batch
    holds a KV cache of B x (longest prompt) positions); None runs every row in one call. Rows
    are sorted by length before batching, so each batch pads to the smallest length bucket.
    """

    def __init__(self, model=None, *, rules=None, batch_size: Optional[int] = None):
        if model is None:
            from negojax.api import load_model
            model = load_model("default", rules=rules)
        if model.tokenizer is None:
            raise ValueError("LocalJudge needs a model with a tokenizer and chat template; load "
                             "a checkpoint (an HF directory, a .gguf file or 'default')")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"LocalJudge batch_size must be >= 1 or None, got {batch_size}")
        self.config = model.config
        # The answer is read at the generation prompt, so a reasoning template must close its
        # think block there (Qwen3 with thinking off), whatever the policy's setting.
        self.tokenizer = model.tokenizer.with_thinking(False)
        self.rules = rules if rules is not None else model.rules
        self.params = model.params
        if self.rules is not None and self.rules is not model.rules:
            self.params = transformer.place_params(self.params, self.rules)
        self.batch_size = batch_size
        self._answer_ids = {}

    def follow(self, params, config) -> None:
        """Judge with `params` of `config` from now on, laid out as the judge's own: a
        self-rewarding run's live policy (LoRA adapters included), set every step."""
        self.params, self.config = params, config

    def __repr__(self) -> str:
        return f"LocalJudge(model={self.config.family}, vocab={self.config.vocab_size})"

    def _answers(self, question: rubric.Question) -> np.ndarray:
        if question.name not in self._answer_ids:
            self._answer_ids[question.name] = answer_token_ids(self.tokenizer, question.answers)
        return self._answer_ids[question.name]

    def evaluate(self, question: rubric.Question, conversations: list[list[dict]]) -> np.ndarray:
        if question.name == rubric.CA_SCORE.name:
            reduce = "expected"
        elif len(question.answers) == 2:
            reduce = "binary"
        else:
            raise ValueError(f"LocalJudge reads the CA score or two-answer questions; question "
                             f"{question.name!r} has answers {question.answers}")
        prompts = [self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
                   for messages in conversations]
        out = np.zeros(len(prompts), np.float64)
        if not prompts:
            return out
        answer_ids = jnp.asarray(self._answers(question))
        order = np.argsort([len(p) for p in prompts], kind="stable")
        step = self.batch_size or len(prompts)
        for start in range(0, len(order), step):
            rows = order[start:start + step]
            session = prefill(self.params, self.config, [prompts[r] for r in rows],
                              rules=self.rules)
            values = _answer_values(session.logits, answer_ids, reduce)
            out[rows] = np.asarray(jax.device_get(values))[:len(rows)]
        return out

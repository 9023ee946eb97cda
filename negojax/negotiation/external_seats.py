"""Seats a fixed model outside training plays (`rollout.opponent=model`): the engine hands such
a seat its chats and reads back text, so it may be any architecture with its own tokenizer, or
a model behind an OpenAI-compatible endpoint. Its turns carry no tokens and are never trained.
"""
from __future__ import annotations

import concurrent.futures

from negojax.errors import ConfigError, RunStopped
from negojax.negotiation.records import message_text
from negojax.rewards.http_judge import ChatEndpoint, Fault
from negojax.sampling import SamplingParams, sample


class OpponentFailing(RunStopped):
    """An external opponent could not answer; the message is one line."""


class ExternalSeat:
    """A seat that answers role-tagged chats with text."""

    def respond(self, chats: list[list[dict]], *, max_new_tokens: int, sampling: SamplingParams,
                seed: int) -> list[str]:
        raise NotImplementedError


class LocalSeat(ExternalSeat):
    """A negojax Model (negojax.api.Model, with a tokenizer): its own chat template encodes each
    chat, negojax.sampling.sample answers, its tokenizer decodes."""

    def __init__(self, model):
        if model.tokenizer is None:
            raise ConfigError("config.rollout.opponent_model.path: the opponent model has no "
                              "tokenizer to read the dialogue with; point it at a checkpoint "
                              "that has one")
        self.model = model

    def respond(self, chats, *, max_new_tokens, sampling, seed):
        tokenizer, model = self.model.tokenizer, self.model
        prompts = [tokenizer.apply_chat_template(chat, add_generation_prompt=True)
                   for chat in chats]
        out = sample(model.params, model.config, prompts, max_new_tokens=max_new_tokens,
                     sampling=sampling, stop_ids=model.stop_ids, seed=seed, rules=model.rules)
        return [message_text(tokenizer, tokens, finished)
                for tokens, finished in zip(out.tokens, out.finished)]


class HttpSeat(ExternalSeat):
    """A model behind an OpenAI-compatible chat endpoint. An answer that still fails after the
    endpoint's retries stops the run (OpponentFailing) rather than train against a made-up
    message; the rerun resumes from the last checkpoint.

    A reply is cut to the turn's token budget in `tokenizer` (the policy's, which reads it), as
    the policy's own turns are: an endpoint that ignores max_tokens (up to the endpoint's
    max_reply_bytes) would otherwise overflow the policy's context, sized for such turns."""

    def __init__(self, endpoint: ChatEndpoint, tokenizer):
        self.endpoint = endpoint
        self.tokenizer = tokenizer

    def respond(self, chats, *, max_new_tokens, sampling, seed):
        options = dict(max_tokens=max_new_tokens, temperature=sampling.temperature,
                       top_p=sampling.top_p)

        def answer(k):
            text = self.endpoint.complete(chats[k], seed=seed + k, **options).strip()
            tokens = self.tokenizer.encode(text)
            if len(tokens) <= max_new_tokens:
                return text
            return self.tokenizer.decode(tokens[:max_new_tokens]).strip()
        workers = max(1, min(self.endpoint.concurrency, len(chats)))
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(answer, range(len(chats))))
        except Fault as fault:
            raise OpponentFailing(
                f"the opponent endpoint {self.endpoint.base_url} failed ({fault.reason}); "
                "nothing was trained on this step; fix the server or "
                "rollout.opponent_model, then rerun to resume") from None

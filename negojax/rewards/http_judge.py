"""A judge behind an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp, hosted APIs),
on `ChatEndpoint`, the HTTP client it shares with an opponent seat served by such an endpoint
(negojax.negotiation.external_seats).

Standard library only. `base_url` is the part before `/chat/completions`, e.g.
`http://127.0.0.1:8000/v1` or `https://api.openai.com/v1`. A bare `http://host:port` (no path) gets
`/v1` appended, since every OpenAI-compatible server mounts its API there; any other path is used
as given, so providers that mount it elsewhere (`.../v1beta/openai`) work too.

A judge fault never raises out of a batch method: after the retries the sample is NaN, `failures`
counts it and one warning names the reason. `timeout_s` bounds the connect and each read of one
attempt; a 429's Retry-After is honoured up to `backoff_max_s`; a reply body over
`max_reply_bytes` is a fault, read no further. The API key is read from the environment variable
`api_key_env`, sent only in the Authorization header, and never logged or written to the cache.
"""
import concurrent.futures
import hashlib
import http.client
import json
import logging
import math
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np

from negojax import storage
from negojax.rewards import judge, replies, rubric

logger = logging.getLogger(__name__)


class JudgeUnreachable(RuntimeError):
    """An endpoint (a judge's, an opponent's) cannot be used; the message is one line naming
    base_url."""


class Fault(Exception):
    """One failed HTTP exchange (its `reason` one line); `retryable` says whether trying again can help, `kind` names
    the failure in the run's metrics (timeout, http_<status>, connection, malformed, no_text,
    unreadable)."""

    def __init__(self, reason: str, retryable: bool, retry_after_s: float | None = None, *,
                 kind: str):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.kind = kind


def normalize_base_url(base_url: str) -> str:
    url = base_url.rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"judge base_url must look like http://host:port/v1, got {base_url!r}")
    if url.endswith("/chat/completions"):
        raise ValueError(f"judge base_url is the part before /chat/completions, got {base_url!r}")
    return url if parts.path else url + "/v1"


def _retry_after_seconds(header: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored (exponential backoff applies)."""
    try:
        seconds = float(header)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class ChatEndpoint:
    """An OpenAI-compatible chat-completions client: `complete` with retries, backoff, a
    concurrency limit across threads and an optional reply cache. `role` (judge, opponent)
    names the endpoint in its messages."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, max_retries: int = 4, concurrency: int = 8,
                 cache_dir: str | os.PathLike | None = None,
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 max_reply_bytes: int = 1_000_000, role: str = "chat"):
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0 or max_reply_bytes < 1:
            raise ValueError(f"{type(self).__name__} needs concurrency >= 1, max_retries >= 0, "
                             "timeout_s > 0 and max_reply_bytes >= 1")
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.role = role
        self.max_reply_bytes = max_reply_bytes
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.requests_sent = 0
        self.cache_hits = 0
        self._api_key = os.environ.get(api_key_env) or None
        # One limit across every batch call on this judge, not only within one call.
        self._slots = threading.BoundedSemaphore(concurrency)
        self._counter_lock = threading.Lock()
        # Built here so proxy settings are read from the environment once, at construction.
        self._opener = urllib.request.build_opener()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    def check_reachable(self) -> None:
        """Raise JudgeUnreachable (one line naming base_url) unless the endpoint answers."""
        request = urllib.request.Request(f"{self.base_url}/models", headers=self._headers())
        role = self.role
        try:
            with self._opener.open(request, timeout=min(self.timeout_s, 10.0)):
                pass  # an answer proves it reachable; its body, of any size, is not read
        except urllib.error.HTTPError as error:
            error.close()
            if error.code in (401, 403):
                raise JudgeUnreachable(
                    f"{role} endpoint {self.base_url} refused the API key (HTTP {error.code}); "
                    f"set the {self.api_key_env} environment variable") from None
            if error.code >= 500:
                raise JudgeUnreachable(
                    f"{role} endpoint {self.base_url} answered HTTP {error.code}; check the "
                    f"{role} server") from None
            # Any other answer (a server without /models, say) proves it is reachable.
        except (OSError, http.client.HTTPException) as error:
            raise JudgeUnreachable(
                f"{role} endpoint {self.base_url} is unreachable ({_describe(error)}); "
                f"start the {role} server or fix the {role} base_url") from None

    def complete(self, messages: list[dict], *, accept=None, **options) -> str:
        """The reply text for one request, `options` (temperature, max_tokens, ...) in its body:
        from the cache, else over HTTP with retries; a `Fault` after the last attempt.

        `accept(reply) -> bool` says whether the caller can use a reply (default: any): only an
        accepted reply is cached, so a rerun after the server is fixed asks again, and a cached
        reply that is not accepted is ignored."""
        accept = accept or _any_reply
        payload = json.dumps({"model": self.model, "messages": messages, **options},
                             sort_keys=True, ensure_ascii=False)
        # The endpoint is in the key: two servers of the same model name are not one model.
        key = hashlib.sha256(f"{self.base_url}\n{payload}".encode("utf-8")).hexdigest()
        cached = self._cache_read(key)
        if cached is not None and accept(cached):
            with self._counter_lock:
                self.cache_hits += 1
            return cached
        attempt = 0
        while True:
            try:
                with self._slots:
                    reply = self._post(payload)
                if accept(reply):
                    self._cache_write(key, reply)
                return reply
            except Fault as fault:
                if not fault.retryable or attempt == self.max_retries:
                    raise Fault(f"{fault.reason}; {attempt + 1} attempt(s)", False,
                                 kind=fault.kind) from None
                time.sleep(self._delay(attempt, fault.retry_after_s))
                attempt += 1

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.backoff_max_s)
        # Exponential backoff with "equal jitter": half fixed, half random, so that a burst of
        # failed requests does not retry in lockstep.
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** attempt)
        return delay / 2 + random.uniform(0, delay / 2)

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _post(self, payload: str) -> str:
        request = urllib.request.Request(f"{self.base_url}/chat/completions",
                                         data=payload.encode("utf-8"), headers=self._headers(),
                                         method="POST")
        with self._counter_lock:
            self.requests_sent += 1
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                # One byte past the cap tells a reply over it from one that just fits; the rest
                # of a longer one is never read.
                body = response.read(self.max_reply_bytes + 1)
        except urllib.error.HTTPError as error:
            error.close()
            retryable = error.code in (408, 429) or error.code >= 500
            retry_after = (_retry_after_seconds(error.headers.get("Retry-After"))
                           if error.code == 429 else None)
            raise Fault(f"HTTP {error.code}", retryable, retry_after,
                         kind=f"http_{error.code}") from None
        except (OSError, http.client.HTTPException) as error:
            reason = _describe(error)
            raise Fault(reason, retryable=True,
                         kind="timeout" if reason == "timed out" else "connection") from None
        if len(body) > self.max_reply_bytes:
            # The same request gets the same flood; the content (never longer than the body it
            # is decoded from) is thereby bounded too.
            raise Fault(f"reply over {self.max_reply_bytes} bytes; raise the {self.role}'s "
                        "max_reply_bytes to allow it", retryable=False, kind="unreadable")
        try:
            content = json.loads(body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise Fault("malformed JSON reply", retryable=True, kind="malformed") from None
        if not isinstance(content, str):
            # At temperature 0 the same request gets the same empty reply (e.g. a reasoning
            # model that spent max_tokens thinking), so trying again cannot help.
            raise Fault("reply has no text content", retryable=False, kind="no_text")
        return content

    def _cache_path(self, key: str) -> str:
        return storage.join(self.cache_dir, key[:2], f"{key}.json")

    def _cache_read(self, key: str) -> str | None:
        if self.cache_dir is None:
            return None
        try:
            return json.loads(storage.read_text(self._cache_path(key)))["content"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _cache_write(self, key: str, reply: str) -> None:
        if self.cache_dir is not None:
            # Whole or not at all, so a concurrent reader or a crash never sees half a file.
            storage.write_text(self._cache_path(key),
                               json.dumps({"model": self.model, "content": reply}))


class HttpJudge(ChatEndpoint, judge.Judge):
    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60.0, max_retries: int = 4, concurrency: int = 8,
                 cache_dir: str | os.PathLike | None = None, fallback: str = "zero",
                 backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 max_reply_bytes: int = 1_000_000, max_tokens: int = 16,
                 temperature: float = 0.0):
        super().__init__(base_url, model, api_key_env=api_key_env, timeout_s=timeout_s,
                         max_retries=max_retries, concurrency=concurrency, cache_dir=cache_dir,
                         backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
                         max_reply_bytes=max_reply_bytes, role="judge")
        self.fallback = judge.check_fallback(fallback)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.failures = 0

    def evaluate(self, question: rubric.Question, conversations: list[list[dict]]) -> np.ndarray:
        if not conversations:
            return np.zeros(0, dtype=np.float64)
        workers = min(self.concurrency, len(conversations))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda messages: self._judge_one(question, messages),
                                    conversations))
        self.last_failures = [kind for _, kind in results]
        return np.asarray([value for value, _ in results], dtype=np.float64)

    def _judge_one(self, question: rubric.Question, messages: list[dict]
                   ) -> tuple[float, str | None]:
        """(value, None), or (NaN, the failure's kind)."""
        try:
            reply = self._complete(question, messages)
            value = replies.parse_reply(question, reply)
            if value is None:
                reask = messages + [{"role": "assistant", "content": reply},
                                    {"role": "user", "content": question.reask}]
                reply = self._complete(question, reask)
                value = replies.parse_reply(question, reply)
            if value is None:
                raise Fault(f"unreadable reply after one re-ask: {reply[:40]!r}", retryable=False,
                             kind="unreadable")
            return value, None
        except Fault as fault:
            with self._counter_lock:
                self.failures += 1
                failures = self.failures
            logger.warning("judge %s failed for one sample (%s); %d failures so far",
                           question.name, fault.reason, failures)
            return math.nan, fault.kind

    def _complete(self, question: rubric.Question, messages: list[dict]) -> str:
        def readable(reply: str) -> bool:
            return replies.parse_reply(question, reply) is not None
        return self.complete(messages, accept=readable, temperature=self.temperature,
                             max_tokens=self.max_tokens)


def _any_reply(reply: str) -> bool:
    return True


def _describe(error: BaseException) -> str:
    """A short reason for a transport error (timeout, refused connection, cut-off reply)."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    return f"connection error: {type(reason).__name__}: {reason}"[:120]

"""Tokenizers of HF model directories and their chat templates.

A `Tokenizer` wraps either a `tokenizer.json` (tokenizers library) or a sentencepiece
`tokenizer.model`, with the special tokens and chat template from `tokenizer_config.json` (or
`chat_template.jinja`, or a template file given by the caller). Templates render as
transformers renders them, so any published template works, including ones that render earlier
messages differently once later ones follow (Qwen3 drops past think blocks): callers re-render
a conversation whenever it changes and never assume one rendering extends another.
"""
from __future__ import annotations

import copy
import datetime
import json
import os
from typing import Optional, Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# End-of-turn markers of the chat formats we serve; generation stops on any that exists.
_END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>",
                       "<|eom_id|>", "<end_of_turn>")


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read the chat template file ({e.strerror})"
                                ) from None


def _token_text(token) -> Optional[str]:
    """tokenizer_config.json spells special tokens as strings or AddedToken dicts."""
    if isinstance(token, dict):
        return token.get("content")
    return token


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _compile_template(source: str) -> jinja2.Template:
    # The same environment HF uses, so templates written for transformers render identically.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False, **_: json.dumps(
        x, indent=indent, ensure_ascii=ensure_ascii)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(source)


class _HFBackend:
    def __init__(self, path: str):
        from tokenizers import Tokenizer as _Tok
        self._tok = _Tok.from_file(path)

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> Optional[int]:
        return self._tok.token_to_id(token)

    def id_to_token(self, i: int) -> Optional[str]:
        return self._tok.id_to_token(i)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)


class _SentencePieceBackend:
    def __init__(self, path: str, add_bos: bool):
        import sentencepiece as spm
        self._sp = spm.SentencePieceProcessor(model_file=path)
        self._add_bos = add_bos

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        ids = self._sp.encode(text)
        if add_special_tokens and self._add_bos and self._sp.bos_id() >= 0:
            ids = [self._sp.bos_id()] + ids
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        del skip_special_tokens  # sentencepiece drops control tokens when decoding
        return self._sp.decode(list(ids))

    def token_to_id(self, token: str) -> Optional[int]:
        i = self._sp.piece_to_id(token)
        return None if i == self._sp.unk_id() and token != self._sp.id_to_piece(i) else i

    def id_to_token(self, i: int) -> Optional[str]:
        return self._sp.id_to_piece(i)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()


def has_tokenizer(model_dir: str) -> bool:
    """Whether model_dir holds tokenizer files; a weights-only directory loads without one."""
    return any(os.path.isfile(os.path.join(model_dir, name))
               for name in ("tokenizer.json", "tokenizer.model"))


class Tokenizer:
    """Encode/decode, special and stop ids, and the chat template.

    `chat_template` (a .jinja file) replaces the directory's template. `thinking` is passed to
    the template as `enable_thinking` (Qwen3 and other reasoning templates read it; the rest
    ignore it): False, as the method trains, makes the generation prompt close an empty think
    block so the model answers at once."""

    def __init__(self, model_dir: str, *, chat_template: Optional[str] = None,
                 thinking: bool = False):
        self.model_dir = model_dir
        self.thinking = bool(thinking)
        cfg = _read_json(os.path.join(model_dir, "tokenizer_config.json"))
        json_path = os.path.join(model_dir, "tokenizer.json")
        sp_path = os.path.join(model_dir, "tokenizer.model")
        if os.path.isfile(json_path):
            self._backend = _HFBackend(json_path)
        elif os.path.isfile(sp_path):
            self._backend = _SentencePieceBackend(sp_path, bool(cfg.get("add_bos_token", True)))
        else:
            raise FileNotFoundError(f"{model_dir}: no tokenizer.json or tokenizer.model; point "
                                    "model.path at an HF model directory with a tokenizer")
        self.bos_token = _token_text(cfg.get("bos_token"))
        self.eos_token = _token_text(cfg.get("eos_token"))
        self.pad_token = _token_text(cfg.get("pad_token"))
        self.bos_id = self._id_or_none(self.bos_token)
        self.eos_id = self._id_or_none(self.eos_token)
        pad_id = self._id_or_none(self.pad_token)
        self.pad_id = pad_id if pad_id is not None else self.eos_id
        self.chat_template = (_read_text(chat_template) if chat_template
                              else self._read_chat_template(cfg))
        self._template = None
        stops = {self.eos_id} if self.eos_id is not None else set()
        gen_eos = _read_json(os.path.join(model_dir, "generation_config.json")).get("eos_token_id")
        stops.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None
                     else [])
        stops.update(i for i in map(self._id_or_none, _END_OF_TURN_TOKENS) if i is not None)
        self.stop_ids = sorted(stops)

    def with_thinking(self, thinking: bool) -> "Tokenizer":
        """The same tokenizer, rendering templates with `enable_thinking=thinking`."""
        other = copy.copy(self)
        other.thinking = bool(thinking)
        return other

    def _id_or_none(self, token: Optional[str]) -> Optional[int]:
        return None if token is None else self._backend.token_to_id(token)

    def _read_chat_template(self, cfg: dict) -> Optional[str]:
        jinja_path = os.path.join(self.model_dir, "chat_template.jinja")
        if os.path.isfile(jinja_path):
            return _read_text(jinja_path)
        template = cfg.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
            template = {t["name"]: t["template"] for t in template}.get("default")
        return template

    # ------------------------------------------------------------------------- basics
    @property
    def vocab_size(self) -> int:
        return self._backend.vocab_size

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of text; special-token strings in text map to their single ids."""
        return self._backend.encode(text, add_special_tokens)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._backend.decode([int(i) for i in ids], skip_special_tokens)

    def token_to_id(self, token: str) -> Optional[int]:
        return self._backend.token_to_id(token)

    def id_to_token(self, i: int) -> Optional[str]:
        return self._backend.id_to_token(i)

    # --------------------------------------------------------------------- chat template
    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The chat template applied to role-tagged messages [{"role", "content"}, ...], with
        the variables transformers passes (special tokens, `enable_thinking`)."""
        if self.chat_template is None:
            raise ValueError(f"{self.model_dir}: no chat template; add `chat_template` to "
                             "tokenizer_config.json or a chat_template.jinja file, or set "
                             "model.chat_template to a template file")
        if self._template is None:
            self._template = _compile_template(self.chat_template)
        return self._template.render(messages=list(messages), tools=None, documents=None,
                                     add_generation_prompt=add_generation_prompt,
                                     enable_thinking=self.thinking,
                                     bos_token=self.bos_token or "", eos_token=self.eos_token or "",
                                     pad_token=self.pad_token or "")

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True
                            ) -> list[int]:
        """Token ids of the rendered chat, tokenised as one text, as transformers'
        `apply_chat_template(..., tokenize=True)` does."""
        return self.encode(self.render_chat(messages, add_generation_prompt))


def load_tokenizer(model_dir: str, *, chat_template: Optional[str] = None,
                   thinking: bool = False) -> Tokenizer:
    return Tokenizer(model_dir, chat_template=chat_template, thinking=thinking)

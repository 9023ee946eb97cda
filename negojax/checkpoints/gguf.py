"""GGUF (llama.cpp) files -> HF model directories that `hf.load_hf_params` and transformers read.

Weights are dequantised to float32 one tensor at a time and streamed into model.safetensors;
llama.cpp's Q/K row permutation (applied to llama-family models by its convert script so that
its RoPE kernel can rotate adjacent pairs) is undone here. The tokenizer is rebuilt from the
GGUF vocabulary and merges as a byte-level BPE `tokenizer.json`. Gemma 3 files differ in names,
norms, config and tokenizer; gguf_gemma3.py holds those.
"""
from __future__ import annotations

import json
import os
import re
from typing import Callable, NamedTuple

import numpy as np

from negojax.checkpoints import gguf_gemma3, hf
from negojax.models.config import ModelConfig

SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K", "Q6_K")
_FAMILIES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
ARCHITECTURES = tuple(sorted([*_FAMILIES, gguf_gemma3.ARCH]))

_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight",
              "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
_BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.(.+)$")

# Pre-tokenizer split rules (tokenizer.ggml.pre), as llama.cpp applies them.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_PRE_TOKENIZERS = {"default": "gpt2", "gpt-2": "gpt2", "smollm": "digits+gpt2",
                   "llama-bpe": _LLAMA3_SPLIT, "llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT,
                   "qwen2": _QWEN2_SPLIT}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


def hf_tensor_name(gguf_name: str, path: str, top: dict = _TOP_NAMES,
                   block: dict = _BLOCK_NAMES,
                   layout: str = "llama/qwen2/qwen3 layout negojax supports") -> str:
    """llama.cpp tensor name -> HF name ('blk.3.attn_q.weight' -> 'model.layers.3...'), by an
    architecture's tables of top-level and per-block names (gemma3: gguf_gemma3's)."""
    if gguf_name in top:
        return top[gguf_name]
    m = _BLOCK_RE.match(gguf_name)
    if m and m.group(2) in block:
        return f"model.layers.{m.group(1)}.{block[m.group(2)]}"
    raise ValueError(f"{path}: tensor {gguf_name!r} has no HF counterpart in the {layout}")


def unpermute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k permutation.

    The converter groups each head's rows as (2, Dh/2) halves and interleaves them, i.e.
    w.reshape(n_head, 2, Dh/2, ...).swapaxes(1, 2); reading rows back as (Dh/2, 2) and swapping
    again restores HF's rotate-half order.
    """
    rows = weight.shape[0]
    return (weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _field(reader, key, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _tokens(reader, path: str) -> list[str]:
    tokens = _field(reader, "tokenizer.ggml.tokens")
    if tokens is None:
        raise ValueError(f"{path}: missing GGUF metadata key 'tokenizer.ggml.tokens'")
    return tokens


def read_config(reader, path: str) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch not in _FAMILIES:
        raise ValueError(f"{path}: GGUF architecture {arch!r} is not supported; expected one of "
                         f"{list(ARCHITECTURES)}")
    names = {t.name for t in reader.tensors}
    if "rope_freqs.weight" in names:
        raise ValueError(f"{path}: tensor 'rope_freqs.weight' (llama-3 rope scaling) is not "
                         "supported in GGUF import; load the HF checkpoint instead")

    def need(key):
        value = _field(reader, f"{arch}.{key}")
        if value is None:
            raise ValueError(f"{path}: missing GGUF metadata key '{arch}.{key}'")
        return value

    heads, hidden = int(need("attention.head_count")), int(need("embedding_length"))
    return ModelConfig(
        family=_FAMILIES[arch],
        vocab_size=len(_tokens(reader, path)),
        hidden_size=hidden,
        intermediate_size=int(need("feed_forward_length")),
        num_layers=int(need("block_count")),
        num_heads=heads,
        num_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
        head_dim=int(_field(reader, f"{arch}.attention.key_length", hidden // heads)),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        rms_norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        tie_word_embeddings="output.weight" not in names,
        max_position_embeddings=int(need("context_length")),
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"),
    )


class _Plan(NamedTuple):
    """What differs between architectures."""
    config: dict  # config.json
    hf_name: Callable[[str], str]  # GGUF tensor name -> HF name
    to_hf: Callable[[str, np.ndarray], np.ndarray]  # (GGUF name, dequantised) -> HF layout
    tokenizer: object  # tokenizers.Tokenizer


def _llama_to_hf(config: ModelConfig):
    """Only llama's q/k rows are permuted by llama.cpp; qwen2/qwen3 are stored in HF order."""
    heads = ({".attn_q.weight": config.num_heads, ".attn_k.weight": config.num_kv_heads}
             if config.family == "llama" else {})

    def to_hf(gguf_name: str, value: np.ndarray) -> np.ndarray:
        for suffix, n_head in heads.items():
            if gguf_name.endswith(suffix):
                return unpermute_rows(value, n_head)
        return value
    return to_hf


def _llama_plan(reader, path: str) -> _Plan:
    config = read_config(reader, path)
    hf_cfg = config.to_hf_dict()
    pad = _field(reader, "tokenizer.ggml.padding_token_id")
    if pad is not None:
        hf_cfg["pad_token_id"] = pad
    return _Plan(hf_cfg, lambda name: hf_tensor_name(name, path), _llama_to_hf(config),
                 build_tokenizer(reader, path))


def _gemma3_plan(reader, path: str) -> _Plan:
    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "llama":
        raise ValueError(f"{path}: tokenizer.ggml.model {kind!r} is not supported for gemma3; "
                         "negojax rebuilds Gemma's SentencePiece vocabulary ('llama') only")
    tokens = _tokens(reader, path)
    tied = all(t.name != "output.weight" for t in reader.tensors)
    hf_cfg = gguf_gemma3.hf_config(lambda key: _field(reader, key), len(tokens), tied, path)
    tokenizer = gguf_gemma3.build_tokenizer(
        tokens, _field(reader, "tokenizer.ggml.token_type", []),
        _field(reader, "tokenizer.ggml.bos_token_id"),
        bool(_field(reader, "tokenizer.ggml.add_bos_token", False)))
    return _Plan(hf_cfg, lambda name: hf_tensor_name(name, path, gguf_gemma3.TOP_NAMES,
                                                    gguf_gemma3.BLOCK_NAMES, gguf_gemma3.LAYOUT),
                 gguf_gemma3.to_hf, tokenizer)


def _plan(reader, path: str) -> _Plan:
    if _field(reader, "general.architecture") == gguf_gemma3.ARCH:
        return _gemma3_plan(reader, path)
    return _llama_plan(reader, path)  # read_config refuses any other architecture


def _dequantized_tensors(reader, plan: _Plan):
    """Yield (hf_name, float32 array in HF layout) for every GGUF tensor, one at a time."""
    from gguf.quants import dequantize

    for t in reader.tensors:
        value = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        value = value.reshape(tuple(int(d) for d in reversed(t.shape)))
        yield plan.hf_name(t.name), plan.to_hf(t.name, value)


def _check_tensors(reader, plan: _Plan, path: str) -> None:
    """Fail before writing anything: unsupported types, unknown names."""
    for t in reader.tensors:
        if t.tensor_type.name not in SUPPORTED_TYPES:
            raise ValueError(f"{path}: tensor {t.name!r} has type {t.tensor_type.name}, which "
                             f"negojax cannot dequantise; supported: {', '.join(SUPPORTED_TYPES)}")
        plan.hf_name(t.name)


# ------------------------------------------------------------------------------ tokenizer


def build_tokenizer(reader, path: str):
    """A `tokenizers.Tokenizer` equivalent to the GGUF's byte-level BPE vocabulary."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers import processors

    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"{path}: tokenizer.ggml.model {kind!r} is not supported; negojax "
                         "rebuilds only byte-level BPE ('gpt2') vocabularies")
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise ValueError(f"{path}: tokenizer.ggml.pre {pre!r} is not supported; expected one of "
                         f"{sorted(_PRE_TOKENIZERS)}")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in _field(reader, "tokenizer.ggml.merges", [])]
    rule = _PRE_TOKENIZERS[pre]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges,
                               ignore_merges=rule == _LLAMA3_SPLIT))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=rule != _LLAMA3_SPLIT
                                          and rule != _QWEN2_SPLIT)
    if rule == "gpt2":
        tok.pre_tokenizer = byte_level
    elif rule == "digits+gpt2":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(rule), behavior="isolated"), byte_level])
    tok.decoder = decoders.ByteLevel()
    types = _field(reader, "tokenizer.ggml.token_type", [])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, k in zip(tokens, types) if k == _CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, k in zip(tokens, types) if k == _USER_DEFINED])
    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    if _field(reader, "tokenizer.ggml.add_bos_token", False) and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A", pair=f"{tokens[bos]} $A {tokens[bos]} $B",
            special_tokens=[(tokens[bos], bos)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _tokenizer_config(reader, model_max_length: int) -> dict:
    tokens = _field(reader, "tokenizer.ggml.tokens")
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
           "model_max_length": model_max_length,
           "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
           "add_eos_token": bool(_field(reader, "tokenizer.ggml.add_eos_token", False))}
    for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                      ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")):
        token_id = _field(reader, f"tokenizer.ggml.{key}")
        if token_id is not None:
            cfg[name] = tokens[token_id]
    template = _field(reader, "tokenizer.chat_template")
    if template is not None:
        cfg["chat_template"] = template
    return cfg


# ------------------------------------------------------------------------------- convert


def gguf_to_hf_dir(gguf_path: str, out_dir: str) -> str:
    """Convert a GGUF file into an HF directory (config.json, model.safetensors in float32,
    tokenizer.json, tokenizer_config.json, generation_config.json). Returns out_dir."""
    from gguf import GGUFReader

    if not os.path.isfile(gguf_path):
        raise FileNotFoundError(f"{gguf_path}: no such GGUF file")
    try:
        reader = GGUFReader(gguf_path)
    except (ValueError, OSError, IndexError, EOFError) as e:  # what a cut-short header raises
        raise ValueError(f"{gguf_path}: not a readable GGUF file ({hf._one_line(e)}); it may be "
                         "truncated, re-download it") from None
    plan = _plan(reader, gguf_path)
    _check_tensors(reader, plan, gguf_path)
    os.makedirs(out_dir, exist_ok=True)

    specs = [(plan.hf_name(t.name), tuple(int(d) for d in reversed(t.shape)),
              np.dtype(np.float32)) for t in reader.tensors]
    hf.write_safetensors(os.path.join(out_dir, hf.SINGLE_FILE), specs,
                         _dequantized_tensors(reader, plan))
    generation = {k: plan.config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                  if plan.config.get(k) is not None}
    plan.tokenizer.save(os.path.join(out_dir, "tokenizer.json"))
    tokenizer_cfg = _tokenizer_config(reader, plan.config["max_position_embeddings"])
    for fname, content in (("config.json", plan.config), ("generation_config.json", generation),
                           ("tokenizer_config.json", tokenizer_cfg)):
        with open(os.path.join(out_dir, fname), "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2, ensure_ascii=False)
    return out_dir

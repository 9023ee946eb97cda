"""llama.cpp's `gemma3` GGUF architecture -> HF `Gemma3ForCausalLM` (model_type gemma3_text).

What differs from the llama layout in gguf.py: four norms per block, RMSNorm weights stored as
1 + w, a config with sliding-window layers, and a SentencePiece-style vocabulary with no merges.
Each choice follows transformers' own GGUF loading of gemma3 files (modeling_gguf_pytorch_utils,
integrations/ggml.py, integrations/gguf/gguf_tokenizer_mapping.py), which the tests compare with.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

ARCH = "gemma3"
ARCHITECTURE = "Gemma3ForCausalLM"

TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight",
              "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
BLOCK_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
}
LAYOUT = ("Gemma 3 text layout negojax supports (vision tensors live in a separate mmproj "
          "GGUF)")

# Not in the GGUF metadata: llama.cpp hard-codes both for gemma3, and they are transformers'
# Gemma3TextConfig defaults (five sliding-window layers, then one global; local RoPE base 10k).
SLIDING_WINDOW_PATTERN = 6
ROPE_LOCAL_BASE_FREQ = 10000.0
# llama.cpp scales queries by key_length**-0.5 except in the 27B (known by its 62 layers), which
# scales by (hidden / heads)**-0.5: the query_pre_attn_scalar of Google's configs (168 there).
_LAYERS_27B = 62

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


def to_hf(gguf_name: str, value: np.ndarray) -> np.ndarray:
    """llama.cpp's converter adds 1 to every Gemma RMSNorm weight (its kernel multiplies by w,
    HF's Gemma norm by 1 + w); subtract it again, as transformers does for names ending in
    'norm.weight' (q/k norms included)."""
    return value - 1 if gguf_name.endswith("norm.weight") else value


def layer_types(num_layers: int) -> list[str]:
    return ["full_attention" if (i + 1) % SLIDING_WINDOW_PATTERN == 0 else "sliding_attention"
            for i in range(num_layers)]


def hf_config(field: Callable[[str], Any], vocab_size: int, tied: bool, path: str) -> dict:
    """config.json in the spelling of google/gemma-3-270m's own, from the `gemma3.*` metadata
    and the tokenizer ids; `field(key)` is a GGUF metadata value or None."""
    def need(key):
        value = field(f"{ARCH}.{key}")
        if value is None:
            raise ValueError(f"{path}: missing GGUF metadata key '{ARCH}.{key}'")
        return value

    head_dim, num_layers = int(need("attention.key_length")), int(need("block_count"))
    hidden, heads = int(need("embedding_length")), int(need("attention.head_count"))
    cfg = {
        "architectures": [ARCHITECTURE], "model_type": "gemma3_text",
        "vocab_size": vocab_size, "hidden_size": hidden,
        "intermediate_size": int(need("feed_forward_length")), "num_hidden_layers": num_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": int(need("attention.head_count_kv")),
        "head_dim": head_dim, "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": int(need("context_length")),
        "rms_norm_eps": float(need("attention.layer_norm_rms_epsilon")),
        # transformers' Gemma 3 default when the file states none.
        "rope_theta": float(field(f"{ARCH}.rope.freq_base") or 1e6),
        "rope_local_base_freq": ROPE_LOCAL_BASE_FREQ, "rope_scaling": None,
        "sliding_window": int(need("attention.sliding_window")),
        "layer_types": layer_types(num_layers),
        "query_pre_attn_scalar": hidden // heads if num_layers == _LAYERS_27B else head_dim,
        "attn_logit_softcapping": None, "final_logit_softcapping": None,
        "attention_bias": False, "attention_dropout": 0.0,
        "tie_word_embeddings": tied, "torch_dtype": "float32",
    }
    for name in ("bos_token_id", "eos_token_id", "padding_token_id"):
        value = field(f"tokenizer.ggml.{name}")
        if value is not None:
            cfg[name.replace("padding", "pad")] = int(value)
    return cfg


# ------------------------------------------------------------------------------ tokenizer


def _respelled(tokens: list[str]) -> list[str]:
    """Runs of spaces are stored as real spaces, but the normalizer turns text spaces into '▁'
    before the model sees them, so those tokens are only reachable spelled with '▁'."""
    return ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens]


def _merges(tokens: list[str], vocab: dict) -> list[tuple[str, str]]:
    """The file has no merges: rebuild them from the vocabulary as transformers'
    `generate_merges` does with Gemma's file order as the rank (its scores do not follow the
    merge order): every split of a token into two vocabulary pieces, tokens in file order,
    longer left piece first."""
    merges = []
    for token in tokens:
        merges.extend((token[:i], token[i:]) for i in range(len(token) - 1, 0, -1)
                      if token[:i] in vocab and token[i:] in vocab)
    return merges


def build_tokenizer(tokens: list[str], types: list[int], bos_id, add_bos: bool):
    """A `tokenizers.Tokenizer` for a Gemma SentencePiece vocabulary ('llama' in GGUF terms):
    BPE with byte fallback over text whose spaces became '▁', as transformers' GemmaTokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors

    spelled = _respelled(tokens)
    vocab = {t: i for i, t in enumerate(spelled)}
    tok = Tokenizer(models.BPE(vocab, _merges(spelled, vocab), unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    # Splits nothing once spaces are '▁', but Gemma's published tokenizer.json has it, and so
    # the file stays the one transformers writes.
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, k in zip(tokens, types) if k == _CONTROL])
    # User-defined tokens ('\n', '\t\t', '<start_of_image>') match whole in raw text, as in
    # llama.cpp; the respelled space runs are reached through merges instead.
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, s, k in zip(tokens, spelled, types) if k == _USER_DEFINED and t == s])
    if add_bos and bos_id is not None:
        bos = tokens[bos_id]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[(bos, bos_id)])
    return tok

"""How HF tensor names and shapes map onto the negojax params pytree, both ways.

HF stores linear weights as [out, in]; negojax keeps [in, *out] with heads split out, so
attention projections reshape and transpose here, in one place.
"""
from __future__ import annotations

import re
from typing import Callable, Iterator

import numpy as np

from negojax.models.config import ModelConfig
from negojax.models.transformer import param_shapes

_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")

# HF per-layer suffix -> negojax layer param name (Llama and Qwen; Gemma 3: `_layer_names`)
HF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm",
    "self_attn.q_proj.weight": "wq",
    "self_attn.k_proj.weight": "wk",
    "self_attn.v_proj.weight": "wv",
    "self_attn.o_proj.weight": "wo",
    "self_attn.q_proj.bias": "bq",
    "self_attn.k_proj.bias": "bk",
    "self_attn.v_proj.bias": "bv",
    "self_attn.q_norm.weight": "q_norm",
    "self_attn.k_norm.weight": "k_norm",
    "post_attention_layernorm.weight": "mlp_norm",
    "mlp.gate_proj.weight": "w_gate",
    "mlp.up_proj.weight": "w_up",
    "mlp.down_proj.weight": "w_down",
}
_OURS_TO_HF_LAYER = {v: k for k, v in HF_LAYER_NAMES.items()}
# Gemma 3's post_attention_layernorm normalises the attention output; its pre-MLP norm (Llama's
# post_attention_layernorm) is pre_feedforward_layernorm.
_GEMMA3_NORMS = {"attn_post_norm": "post_attention_layernorm.weight",
                 "mlp_norm": "pre_feedforward_layernorm.weight",
                 "mlp_post_norm": "post_feedforward_layernorm.weight"}
HF_TOP_NAMES = {"model.embed_tokens.weight": "embed", "model.norm.weight": "final_norm",
                "lm_head.weight": "lm_head"}
_OURS_TO_HF_TOP = {v: k for k, v in HF_TOP_NAMES.items()}


def _layer_names(config: ModelConfig) -> dict[str, str]:
    """Our layer param name -> its HF per-layer suffix, for config's family."""
    if config.sandwich_norms:
        return {**_OURS_TO_HF_LAYER, **_GEMMA3_NORMS}
    return _OURS_TO_HF_LAYER


def hf_shape(config: ModelConfig, name: str) -> tuple:
    """The shape HF uses for one of our (per-layer, unstacked) params."""
    c = config
    D, H, K, Dh, F, V = (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim,
                         c.intermediate_size, c.vocab_size)
    return {
        "embed": (V, D), "final_norm": (D,), "lm_head": (V, D), "attn_norm": (D,),
        "attn_post_norm": (D,), "mlp_norm": (D,), "mlp_post_norm": (D,),
        "wq": (H * Dh, D), "wk": (K * Dh, D), "wv": (K * Dh, D), "wo": (D, H * Dh),
        "bq": (H * Dh,), "bk": (K * Dh,), "bv": (K * Dh,),
        "q_norm": (Dh,), "k_norm": (Dh,), "w_gate": (F, D), "w_up": (F, D), "w_down": (D, F),
    }[name]


def to_ours(config: ModelConfig, name: str, value: np.ndarray) -> np.ndarray:
    """One HF tensor (already checked against hf_shape) -> our layout, unstacked."""
    c = config
    if name in ("wq", "wk", "wv"):
        heads = c.num_heads if name == "wq" else c.num_kv_heads
        return value.T.reshape(c.hidden_size, heads, c.head_dim)
    if name == "wo":
        return value.T.reshape(c.num_heads, c.head_dim, c.hidden_size)
    if name in ("bq", "bk", "bv"):
        return value.reshape(-1, c.head_dim)
    if name in ("w_gate", "w_up", "w_down", "lm_head"):
        return value.T
    return value


def to_hf(config: ModelConfig, name: str, value: np.ndarray) -> np.ndarray:
    """One of our (unstacked) params -> the HF tensor."""
    if name in ("wq", "wk", "wv"):
        return value.reshape(config.hidden_size, -1).T
    if name == "wo":
        return value.reshape(-1, config.hidden_size).T
    if name in ("bq", "bk", "bv"):
        return value.reshape(-1)
    if name in ("w_gate", "w_up", "w_down", "lm_head"):
        return value.T
    return value


def parse_hf_name(config: ModelConfig, name: str):
    """'model.layers.3.self_attn.q_proj.weight' -> ('wq', 3); top-level -> ('embed', None).

    Returns None for tensors negojax does not use (e.g. rotary caches)."""
    m = _LAYER_RE.match(name)
    if m:
        ours = {v: k for k, v in _layer_names(config).items()}.get(m.group(2))
        return (ours, int(m.group(1))) if ours else None
    ours = HF_TOP_NAMES.get(name)
    return (ours, None) if ours else None


def expected_hf_names(config: ModelConfig) -> list[str]:
    shapes = param_shapes(config)
    names = [_OURS_TO_HF_TOP[k] for k in shapes if k != "layers"]
    for i in range(config.num_layers):
        names += [hf_name(config, k, i) for k in shapes["layers"]]
    return names


def iter_hf_tensors(config: ModelConfig, params: dict) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (hf_name, numpy tensor) for every param, one layer slice at a time."""
    for key, value in params.items():
        if key != "layers":
            yield _OURS_TO_HF_TOP[key], to_hf(config, key, np.asarray(value))
    for key, value in params["layers"].items():
        if key == "lora":
            raise ValueError("merge LoRA adapters (negojax.models.lora.merge) before export")
        for i in range(config.num_layers):
            yield hf_name(config, key, i), to_hf(config, key, np.asarray(value[i]))


def params_from_state_dict(config: ModelConfig, get: Callable[[str], np.ndarray],
                           dtype=np.float32) -> dict:
    """Assemble params from a name -> tensor getter (used by tests and small in-memory loads)."""
    shapes = param_shapes(config)
    out = {k: to_ours(config, k, np.asarray(get(_OURS_TO_HF_TOP[k]), dtype))
           for k in shapes if k != "layers"}
    out["layers"] = {
        k: np.stack([to_ours(config, k, np.asarray(get(hf_name(config, k, i)), dtype))
                     for i in range(config.num_layers)])
        for k in shapes["layers"]}
    return out


def hf_tensor_shapes(config: ModelConfig, params: dict) -> list[tuple[str, tuple]]:
    """(hf_name, hf shape) of every tensor `iter_hf_tensors` yields, in the same order, without
    touching any values (so an exporter can plan shards before reading weights)."""
    out = [(_OURS_TO_HF_TOP[k], hf_shape(config, k)) for k in params if k != "layers"]
    for key in params["layers"]:
        if key == "lora":
            raise ValueError("merge LoRA adapters (negojax.models.lora.merge) before export")
        out += [(hf_name(config, key, i), hf_shape(config, key))
                for i in range(config.num_layers)]
    return out


def hf_name(config: ModelConfig, key: str, layer=None) -> str:
    """Our param name (and layer index for stacked ones) -> the HF tensor name."""
    if layer is None:
        return _OURS_TO_HF_TOP[key]
    return f"model.layers.{layer}.{_layer_names(config)[key]}"

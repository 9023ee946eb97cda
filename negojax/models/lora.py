"""LoRA adapters over the transformer's projections, int8 base weights, and merge for export.

Adapters live where the transformer's forward already applies them:
params["layers"]["lora"][proj] = {"a": [L, *in_dims, r], "b": [L, r, *out_dims]}, adding
scale * (x A) B with scale = alpha / rank (carried as ModelConfig.lora_scale). B starts at zero,
so a fresh adapter leaves the model's function unchanged.

For QLoRA-style memory savings the frozen base projections may be stored as per-output-channel
symmetric int8: {"q": int8 W, "scale": f32 [L, 1.., *out_dims]}; `_project` dequantises them.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from negojax.models.config import ModelConfig
from negojax.models.transformer import PROJECTION_INPUT_DIMS

DEFAULT_TARGETS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
BASE_STORAGES = ("float32", "bfloat16", "int8")


def init_lora(params: dict, config: ModelConfig, rank: int, alpha: float,
              targets: Sequence[str] = DEFAULT_TARGETS, seed: int = 0
              ) -> tuple[dict, ModelConfig]:
    """Fresh adapters {proj: {"a", "b"}} for `targets` and the config carrying alpha / rank."""
    if rank < 1:
        raise ValueError(f"lora rank must be >= 1, got {rank}; set lora.rank in the config")
    unknown = [t for t in targets if t not in PROJECTION_INPUT_DIMS]
    if unknown:
        raise ValueError(f"lora targets {unknown} are not projections; choose from "
                         f"{sorted(PROJECTION_INPUT_DIMS)} (config lora.targets)")
    layers = params["layers"]
    keys = jax.random.split(jax.random.key(seed), len(targets))
    adapters = {}
    for key, name in zip(keys, targets):
        shape = _dense_shape(layers[name])
        n_in = PROJECTION_INPUT_DIMS[name]
        in_dims, out_dims = shape[1:1 + n_in], shape[1 + n_in:]
        # Kaiming-style A, zero B: the adapted model starts as the base model.
        a = jax.random.normal(key, (shape[0], *in_dims, rank), jnp.float32) / math.sqrt(
            math.prod(in_dims))
        adapters[name] = {"a": a.astype(config.param_dtype),
                          "b": jnp.zeros((shape[0], rank, *out_dims), config.param_dtype)}
    return adapters, config.replace(lora_scale=float(alpha) / rank)


def with_adapters(params: dict, adapters: dict) -> dict:
    """The params tree with `adapters` attached under layers/lora."""
    return {**params, "layers": {**params["layers"], "lora": adapters}}


def lora_delta(name: str, a, b, scale: float) -> jax.Array:
    """scale * A B laid out like the base weight [L, *in_dims, *out_dims], in float32."""
    n_in = PROJECTION_INPUT_DIMS[name]
    ins, outs = "xyz"[:n_in], "pqr"[:b.ndim - 2]
    return scale * jnp.einsum(f"l{ins}r,lr{outs}->l{ins}{outs}", a.astype(jnp.float32),
                              b.astype(jnp.float32))


def merge(params: dict, config: ModelConfig) -> dict:
    """Fold W + scale * A B into the base weights and drop the adapters (the export path)."""
    layers = dict(params["layers"])
    adapters = layers.pop("lora", {})
    for name, ab in adapters.items():
        base = dequantize(layers[name]) if is_quantized(layers[name]) else layers[name]
        merged = base.astype(jnp.float32) + lora_delta(name, ab["a"], ab["b"], config.lora_scale)
        layers[name] = merged.astype(config.param_dtype)
    return {**params, "layers": layers}


# ------------------------------------------------------------------------ frozen base storage


def is_quantized(w) -> bool:
    return isinstance(w, dict) and set(w) == {"q", "scale"}


def quantize_int8(w, n_in: int) -> dict:
    """Per-output-channel symmetric int8: the scale is max|W| over the input dims / 127."""
    w32 = w.astype(jnp.float32)
    in_axes = tuple(range(1, 1 + n_in))
    scale = jnp.max(jnp.abs(w32), axis=in_axes, keepdims=True) / 127.0
    scale = jnp.where(scale == 0, 1.0, scale)
    q = jnp.clip(jnp.round(w32 / scale), -127, 127).astype(jnp.int8)
    return {"q": q, "scale": scale}


def dequantize(w: dict, dtype=jnp.float32) -> jax.Array:
    return w["q"].astype(dtype) * w["scale"].astype(dtype)


def freeze_base(params: dict, storage: str, targets: Sequence[str] = DEFAULT_TARGETS) -> dict:
    """The frozen base in `storage` ("float32", "bfloat16" or "int8"); int8 applies to `targets`.

    Norms and embeddings stay in their original dtype under int8 (they are small and sensitive).
    """
    if storage == "float32":
        return params
    if storage == "bfloat16":
        return jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    if storage == "int8":
        layers = dict(params["layers"])
        for name in targets:
            layers[name] = quantize_int8(layers[name], PROJECTION_INPUT_DIMS[name])
        return {**params, "layers": layers}
    raise ValueError(f"unknown lora base storage {storage!r}; use {', '.join(BASE_STORAGES)} "
                     "(config lora.base_dtype)")


def frozen_axes(params: dict, axes: dict) -> dict:
    """Logical axes for a frozen base whose projections may be int8 dicts.

    `axes` is `param_axes` of the dense layout; an int8 weight's scale keeps the output axes and
    has size-1 input dims (left unsharded).
    """
    layers = dict(axes["layers"])
    for name, w in params["layers"].items():
        if is_quantized(w):
            full = layers[name]
            n_in = PROJECTION_INPUT_DIMS[name]
            layers[name] = {"q": full, "scale": full[:1] + (None,) * n_in + full[1 + n_in:]}
    return {**axes, "layers": layers}


def _dense_shape(w) -> tuple:
    return tuple((w["q"] if is_quantized(w) else w).shape)

"""LoRA adapters over the transformer's projections, their frozen base, and merge for export.

Adapters live where the transformer's forward already applies them:
params["layers"]["lora"][proj] = {"a": [L, *in_dims, r], "b": [L, r, *out_dims]}, adding
scale * (x A) B with scale = alpha / rank (carried as ModelConfig.lora_scale). B starts at zero,
so a fresh adapter leaves the model's function unchanged.

For QLoRA the frozen base projections may be stored quantised (int8, int4 or NF4; formats in
`negojax.models.quantization`); `_project` dequantises one layer's slice inside the layer scan.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from negojax.models import quantization
from negojax.models.config import ModelConfig
from negojax.models.transformer import PROJECTION_INPUT_DIMS

DEFAULT_TARGETS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")
BASE_STORAGES = ("float32", "bfloat16") + quantization.FORMATS


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
        n_in = PROJECTION_INPUT_DIMS[name]
        shape = quantization.dense_shape(layers[name], n_in)
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
        n_in = PROJECTION_INPUT_DIMS[name]
        base = layers[name]
        if quantization.format_of(base):
            base = quantization.dequantize(base, n_in, layers=True)
        merged = base.astype(jnp.float32) + lora_delta(name, ab["a"], ab["b"], config.lora_scale)
        layers[name] = merged.astype(config.param_dtype)
    return {**params, "layers": layers}


# ------------------------------------------------------------------------ frozen base storage


def freeze_base(params: dict, storage: str, targets: Sequence[str] = DEFAULT_TARGETS) -> dict:
    """The frozen base in `storage` (one of BASE_STORAGES); a quantised format applies to
    `targets`, whose full-precision arrays the result no longer holds.

    Norms and embeddings keep their dtype under quantisation (they are small and sensitive).
    """
    if storage == "float32":
        return params
    if storage == "bfloat16":
        return jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    if storage in quantization.FORMATS:
        layers = dict(params["layers"])
        for name in targets:
            layers[name] = quantization.quantize(layers[name], storage, PROJECTION_INPUT_DIMS[name])
        return {**params, "layers": layers}
    raise ValueError(f"unknown lora base storage {storage!r}; use {', '.join(BASE_STORAGES)} "
                     "(config lora.base_dtype)")


def frozen_axes(params: dict, axes: dict) -> dict:
    """Logical axes for a frozen base whose projections may be quantised dicts; `axes` is
    `param_axes` of the dense layout."""
    layers = dict(axes["layers"])
    for name, w in params["layers"].items():
        fmt = quantization.format_of(w)
        if fmt:
            layers[name] = quantization.axes(fmt, layers[name], PROJECTION_INPUT_DIMS[name])
    return {**axes, "layers": layers}

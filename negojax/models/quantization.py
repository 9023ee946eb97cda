"""Quantised storage of frozen projection weights: int8, int4 and NF4, and their dequantisation.

A quantised weight is a dict whose code key names its format, so the format is part of the
pytree's structure (static under jit) and no flag travels beside it:
  {"int8": int8 [*in, *out], "scale": f32 [1.., *out]}: symmetric per output channel,
      scale = max|W| over the input dims / 127.
  {"int4" | "nf4": uint8 [*in[:-1], nb, bs/2, *out], "scale": f32 [*in[:-1], nb, 1, *out]}:
      the last input dim is cut into nb blocks of bs (64 where it divides, else the whole dim)
      weights with one absmax each; a block's code j sits in the low nibble of byte j and code
      j + bs/2 in the high one, so 4-bit codes take half the bytes of int8.
      int4: symmetric, codes -7..7 (stored + 8), W ~ code * (absmax * f32(1/7)).
      nf4: QLoRA's NormalFloat (Dettmers et al. 2023): W ~ NF4[code] * absmax, the code the
      nearest of the 16 values.
Shapes above are one layer's; the stacked [L, ...] base quantises and dequantises layer by
layer (vmap), and the transformer dequantises one layer's slice inside its layer scan.

Not qwix: it quantises by intercepting the calls of Flax Linen or NNX modules, while the
transformer's math is pure functions over a params pytree scanned over layers, and its nf4 is
listed as emulated, where the point here is the stored bytes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

FORMATS = ("int8", "int4", "nf4")
BLOCK = 64
# bitsandbytes' NF4 table (the quantiles of N(0, 1) normalised to [-1, 1], with an exact 0).
NF4 = np.asarray([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                  0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                  0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                  0.7229568362236023, 1.0], np.float32)
# A value's code is the number of midpoints below it: the nearest table entry, ties going down.
NF4_MIDPOINTS = (NF4[1:] + NF4[:-1]) / 2


def format_of(w) -> str | None:
    """The format of a quantised weight, None for anything else (a plain array, the adapters)."""
    return next((k for k in w if k in FORMATS), None) if isinstance(w, dict) else None


def block_size(n: int) -> int:
    size = BLOCK if n % BLOCK == 0 else n
    if size % 2:
        raise ValueError(f"4-bit bases pack two codes per byte: an input dim of {n} weights is "
                         "odd; use lora.base_dtype=int8 for this model")
    return size


def quantize(w, fmt: str, n_in: int, layers: bool = True) -> dict:
    """`w` [L, *in, *out] (or one layer's [*in, *out] with layers=False) in format `fmt`."""
    if layers:
        return jax.vmap(lambda x: quantize(x, fmt, n_in, layers=False))(w)
    w = jnp.asarray(w, jnp.float32)
    if fmt == "int8":
        scale = jnp.max(jnp.abs(w), axis=tuple(range(n_in)), keepdims=True) / 127.0
        scale = jnp.where(scale == 0, 1.0, scale)
        return {"int8": jnp.clip(jnp.round(w / scale), -127, 127).astype(jnp.int8),
                "scale": scale}
    if fmt not in FORMATS:
        raise ValueError(f"unknown quantised format {fmt!r}; use {', '.join(FORMATS)}")
    n = w.shape[n_in - 1]
    bs = block_size(n)
    blocks = w.reshape(*w.shape[:n_in - 1], n // bs, bs, *w.shape[n_in:])
    absmax = jnp.max(jnp.abs(blocks), axis=n_in, keepdims=True)
    absmax = jnp.where(absmax == 0, 1.0, absmax)
    if fmt == "int4":
        # A product, not absmax / 7: XLA rewrites that division into this product, and the
        # format is what is computed (its NumPy reference matches it bit for bit).
        scale = absmax * np.float32(1 / 7)
        codes = (jnp.clip(jnp.round(blocks / scale), -7, 7) + 8).astype(jnp.uint8)
    else:
        scale = absmax
        normalised = blocks / scale
        codes = jnp.zeros(blocks.shape, jnp.uint8)
        for m in NF4_MIDPOINTS:  # one comparison at a time: no [..., 16] temporary
            codes = codes + (normalised > m).astype(jnp.uint8)
    low, high = jnp.split(codes, 2, axis=n_in)
    return {fmt: low | (high << 4), "scale": scale}


def dequantize(w: dict, n_in: int, dtype=jnp.float32, layers: bool = False) -> jax.Array:
    """The dense weight of a quantised one, in `dtype` (one layer's unless layers=True)."""
    if layers:
        return jax.vmap(lambda x: dequantize(x, n_in, dtype))(w)
    fmt = format_of(w)
    scale = w["scale"].astype(dtype)
    if fmt == "int8":
        return w["int8"].astype(dtype) * scale
    packed = w[fmt]
    codes = jnp.concatenate([packed & 15, packed >> 4], axis=n_in)
    values = (codes.astype(dtype) - 8) if fmt == "int4" else jnp.asarray(NF4, dtype)[codes]
    dense = values * scale
    shape = packed.shape
    return dense.reshape(*shape[:n_in - 1], shape[n_in - 1] * shape[n_in] * 2,
                         *shape[n_in + 1:])


def dense_shape(w, n_in: int) -> tuple:
    """The [L, *in, *out] shape of a stacked weight, quantised or not."""
    fmt = format_of(w)
    if fmt is None:
        return tuple(w.shape)
    shape = tuple(w[fmt].shape)
    if fmt == "int8":
        return shape
    return shape[:n_in] + (shape[n_in] * shape[n_in + 1] * 2,) + shape[n_in + 2:]


def axes(fmt: str, dense_axes: tuple, n_in: int) -> dict:
    """Logical axes of a stacked quantised weight from its dense ones ("layers", *in, *out).

    int8's scale has size-1 input dims (unsharded); a 4-bit weight's block index takes the
    last input dim's axis and its position within a block none.
    """
    lead, last, out = dense_axes[:n_in], dense_axes[n_in], dense_axes[1 + n_in:]
    if fmt == "int8":
        return {"int8": dense_axes, "scale": dense_axes[:1] + (None,) * n_in + out}
    blocked = lead + (last, None) + out
    return {fmt: blocked, "scale": blocked}

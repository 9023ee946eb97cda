"""One decoder-only transformer for Llama 2/3 (SmolLM2), Qwen2/2.5, Qwen3 and Gemma 3 (text).

The NNX module `Transformer` owns parameter creation and their logical axis names; the math is
pure functions over the plain params pytree (`Transformer.params`), so jitted steps take and
return pytrees. Layers are stacked on a leading `layers` axis and run with `lax.scan`, which keeps
compile time independent of depth; what differs between layers besides their params (Gemma 3's
sliding-window or global attention and its RoPE base) is scanned alongside (`layer_schedule`).

Params pytree (shapes; logical axes in `param_axes`, both from the one table `_LAYER_AXES`):
  embed [V, D]; final_norm [D]; lm_head [D, V] (untied only)
  layers: attn_norm [L, D], wq [L, D, H, Dh], wk/wv [L, D, K, Dh], wo [L, H, Dh, D],
          bq [L, H, Dh], bk/bv [L, K, Dh] (qwen2), q_norm/k_norm [L, Dh] (qwen3, gemma3),
          attn_post_norm [L, D] (gemma3), mlp_norm [L, D], w_gate/w_up [L, D, F],
          w_down [L, F, D], mlp_post_norm [L, D] (gemma3)
          lora (optional): {name: {"a": [L, *in, r], "b": [L, r, *out]}} for any projection.
KV cache: {"k": [L, B, S, K, Dh], "v": [L, B, S, K, Dh]}; row b holds `lengths[b]` valid tokens.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from flax import nnx

from negojax.models.config import ModelConfig
from negojax.models.quantization import dequantize

# Logical axis names of every layer parameter; the sharding layer maps them onto a mesh, and
# `param_shapes` reads each parameter's shape from them (`_axis_sizes`).
_LAYER_AXES = {
    "attn_norm": ("layers", "embed"),
    "wq": ("layers", "embed", "heads", "head_dim"),
    "wk": ("layers", "embed", "kv_heads", "head_dim"),
    "wv": ("layers", "embed", "kv_heads", "head_dim"),
    "wo": ("layers", "heads", "head_dim", "embed"),
    "bq": ("layers", "heads", "head_dim"),
    "bk": ("layers", "kv_heads", "head_dim"),
    "bv": ("layers", "kv_heads", "head_dim"),
    "q_norm": ("layers", "head_dim"),
    "k_norm": ("layers", "head_dim"),
    "attn_post_norm": ("layers", "embed"),
    "mlp_norm": ("layers", "embed"),
    "mlp_post_norm": ("layers", "embed"),
    "w_gate": ("layers", "embed", "mlp"),
    "w_up": ("layers", "embed", "mlp"),
    "w_down": ("layers", "mlp", "embed"),
}
# How many leading (after `layers`) dims of each projection are its input.
PROJECTION_INPUT_DIMS = {"wq": 1, "wk": 1, "wv": 1, "wo": 2, "w_gate": 1, "w_up": 1,
                         "w_down": 1}
CACHE_AXES = ("layers", "act_batch", "cache_length", "act_kv_heads", "head_dim")

Constrain = Callable[[jax.Array, tuple], jax.Array]


def _no_constraint(x, _names):
    return x


def layer_param_names(config: ModelConfig) -> list[str]:
    names = ["attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w_gate", "w_up", "w_down"]
    if config.attention_bias:
        names += ["bq", "bk", "bv"]
    if config.qk_norm:
        names += ["q_norm", "k_norm"]
    if config.sandwich_norms:
        names += ["attn_post_norm", "mlp_post_norm"]
    return names


def _axis_sizes(config: ModelConfig) -> dict:
    c = config
    return {"layers": c.num_layers, "embed": c.hidden_size, "heads": c.num_heads,
            "kv_heads": c.num_kv_heads, "head_dim": c.head_dim, "mlp": c.intermediate_size,
            "vocab": c.vocab_size}


def param_shapes(config: ModelConfig) -> dict:
    size = _axis_sizes(config)
    shapes = {"embed": (size["vocab"], size["embed"]), "final_norm": (size["embed"],),
              "layers": {name: tuple(size[a] for a in _LAYER_AXES[name])
                         for name in layer_param_names(config)}}
    if not config.tie_word_embeddings:
        shapes["lm_head"] = (size["embed"], size["vocab"])
    return shapes


def param_axes(params: dict) -> dict:
    """Logical axis names for every leaf of a params pytree (LoRA adapters included)."""
    axes = {"embed": ("vocab", "embed"), "final_norm": ("embed",),
            "lm_head": ("embed", "vocab")}
    out = {k: axes[k] for k in params if k != "layers"}
    layers = {}
    for name, value in params["layers"].items():
        if name == "lora":
            layers["lora"] = {}
            for proj, ab in value.items():
                full = _LAYER_AXES[proj]
                n_in = PROJECTION_INPUT_DIMS[proj]
                layers["lora"][proj] = {"a": full[:1 + n_in] + ("lora_rank",),
                                        "b": ("layers", "lora_rank") + full[1 + n_in:]}
        else:
            layers[name] = _LAYER_AXES[name]
    out["layers"] = layers
    return out


def param_shardings(params: dict, rules) -> dict:
    """NamedShardings for a params pytree (arrays or shapes) from its logical axes."""
    return rules.tree_shardings(param_axes(params), params)


def place_params(params: dict, rules) -> dict:
    """The params on `rules`' mesh, each leaf sharded by its logical axes (unchanged if None)."""
    return params if rules is None else jax.device_put(params, param_shardings(params, rules))


class _Layers(nnx.Module):
    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        shapes = param_shapes(config)["layers"]
        pd = config.param_dtype
        for name, shape in shapes.items():
            if name.endswith("norm"):
                value = _norm_init(config, shape)
            elif name.startswith("b"):
                value = jnp.zeros(shape, pd)
            else:
                fan_in = math.prod(shape[1:1 + PROJECTION_INPUT_DIMS[name]])
                value = (jax.random.normal(rngs.params(), shape, jnp.float32)
                         / math.sqrt(fan_in)).astype(pd)
            setattr(self, name, nnx.Param(value, logical_axes=_LAYER_AXES[name]))


class Transformer(nnx.Module):
    """Parameters with logical axis metadata; the math is the pure functions below."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        pd = config.param_dtype
        V, D = config.vocab_size, config.hidden_size
        self.embed = nnx.Param(jax.random.normal(rngs.params(), (V, D), jnp.float32)
                               .astype(pd) * 0.02, logical_axes=("vocab", "embed"))
        self.layers = _Layers(config, rngs)
        self.final_norm = nnx.Param(_norm_init(config, (D,)), logical_axes=("embed",))
        if not config.tie_word_embeddings:
            self.lm_head = nnx.Param((jax.random.normal(rngs.params(), (D, V), jnp.float32)
                                      / math.sqrt(D)).astype(pd),
                                     logical_axes=("embed", "vocab"))

    @property
    def params(self) -> dict:
        return nnx.state(self, nnx.Param).to_pure_dict()


def _norm_init(config: ModelConfig, shape) -> jax.Array:
    """Norm weights that start as the identity scale: 1, or 0 where the norm scales by 1 + w."""
    return (jnp.zeros if config.norm_plus_one else jnp.ones)(shape, config.param_dtype)


def init_params(config: ModelConfig, seed: int = 0) -> dict:
    return Transformer(config, rngs=nnx.Rngs(seed)).params


# ----------------------------------------------------------------------------------- math


def rms_norm(x, weight, eps):
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return weight.astype(x.dtype) * normed.astype(x.dtype)


def gemma_rms_norm(x, weight, eps):
    """Gemma's RMSNorm: scaled by (1 + weight), in float32 before the cast back (Llama casts
    first, then scales)."""
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (normed * (1.0 + weight.astype(jnp.float32))).astype(x.dtype)


def _norm(config: ModelConfig, x, weight):
    norm = gemma_rms_norm if config.norm_plus_one else rms_norm
    return norm(x, weight, config.rms_norm_eps)


def rope_inv_freq(config: ModelConfig, sliding: bool = False) -> jax.Array:
    """RoPE inverse frequencies [Dh/2] of a global layer, or of a sliding-window one (its own
    base, never scaled)."""
    dim = config.head_dim
    theta = config.rope_local_theta if sliding else config.rope_theta
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    scaling = None if sliding else config.rope_scaling_dict()
    if scaling and scaling["rope_type"] == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif scaling:
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        scaled = jnp.where(wavelen > old / low, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old / high) & (wavelen <= old / low)
        inv_freq = jnp.where(medium, smoothed, scaled)
    return inv_freq


def layer_schedule(config: ModelConfig) -> dict:
    """Per-layer values the layer scan reads next to each layer's params: RoPE inverse
    frequencies [L, Dh/2] and whether the layer attends through the sliding window [L]."""
    sliding = config.layer_is_sliding
    return {"inv_freq": jnp.stack([rope_inv_freq(config, s) for s in sliding]),
            "sliding": jnp.asarray(sliding)}


def _layer_mask(config: ModelConfig, mask, sliding, q_positions, k_positions):
    """`mask` [B, T, S], narrowed on a sliding-window layer to keys less than `sliding_window`
    positions behind the query (HF: kv > q - window). Positions, not slots, so packed branches
    measure the distance along their own sequence."""
    if config.sliding_window is None:
        return mask
    near = q_positions[:, :, None] - k_positions[:, None, :] < config.sliding_window
    return mask & (near | ~sliding)


def apply_rope(x, positions, inv_freq):
    """x [B, T, N, Dh], positions [B, T]; HF's rotate-half convention."""
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, Dh/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(emb).astype(x.dtype), jnp.sin(emb).astype(x.dtype)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def _project(x, layer, name, n_in, dtype, scale):
    """x @ W over the first n_in dims of W, plus the LoRA path when adapters are present."""
    x_axes = "".join("xyz"[:n_in])
    lhs = "...{}".format(x_axes)
    y = _base_matmul(x, layer[name], n_in, dtype)
    out_axes = "".join("pqr"[: y.ndim - x.ndim + n_in])
    lora = layer.get("lora", {}).get(name)
    if lora is not None:
        a, b = lora["a"].astype(dtype), lora["b"].astype(dtype)
        h = jnp.einsum(f"{lhs},{x_axes}r->...r", x, a)
        y = y + scale * jnp.einsum(f"...r,r{out_axes}->...{out_axes}", h, b)
    return y


# Rematerialised under differentiation, so the backward pass keeps the weight as stored (a
# quantised or float32 slice of the layer stack) and casts or dequantises it again: otherwise
# the layer scan saves every layer's compute-dtype copy, a full dequantised base.
@functools.partial(jax.checkpoint, static_argnums=(2, 3), prevent_cse=False)
def _base_matmul(x, w, n_in, dtype):
    # A quantised frozen base is dequantised here, one layer's slice at a time inside the scan.
    w = dequantize(w, n_in, dtype) if isinstance(w, dict) else w.astype(dtype)
    x_axes = "".join("xyz"[:n_in])
    out_axes = "".join("pqr"[: w.ndim - n_in])
    return jnp.einsum(f"...{x_axes},{x_axes}{out_axes}->...{out_axes}", x, w)


# Rematerialised under differentiation: the backward pass recomputes scores and probabilities
# from q, k, v instead of keeping [B, heads, T, S] float32 tensors for every layer (at B=16,
# T=512 those alone overflowed 24 GB for SmolLM2; recomputing costs ~4% more step FLOPs).
@functools.partial(jax.checkpoint, static_argnums=(4, 5), prevent_cse=False)
def _attention(q, k, v, mask, constrain, scale):
    """q [B, T, H, Dh]; k, v [B, S, K, Dh]; mask [B, T, S] (True = attend)."""
    B, T, H, Dh = q.shape
    K = k.shape[2]
    q = q.reshape(B, T, K, H // K, Dh)
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k).astype(jnp.float32) * scale
    scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(B, T, H, Dh)
    return constrain(out, ("act_batch", "act_length", "act_heads", "head_dim"))


def _layer(config, x, layer, positions, inv_freq, kv_fn, constrain):
    """One block. kv_fn(k, v) -> (keys, values, mask, extra) supplies the attended keys."""
    dt, scale = config.dtype, config.lora_scale
    h = _norm(config, x, layer["attn_norm"])
    q = _project(h, layer, "wq", 1, dt, scale)
    k = _project(h, layer, "wk", 1, dt, scale)
    v = _project(h, layer, "wv", 1, dt, scale)
    if config.attention_bias:
        q, k, v = (q + layer["bq"].astype(dt), k + layer["bk"].astype(dt),
                   v + layer["bv"].astype(dt))
    if config.qk_norm:
        q = _norm(config, q, layer["q_norm"])
        k = _norm(config, k, layer["k_norm"])
    q = constrain(apply_rope(q, positions, inv_freq),
                  ("act_batch", "act_length", "act_heads", "head_dim"))
    k = apply_rope(k, positions, inv_freq)
    keys, values, mask, extra = kv_fn(k, v)
    attn = _attention(q, keys, values, mask, constrain, config.attention_scale)
    x = x + _post_norm(config, _project(attn, layer, "wo", 2, dt, scale), layer, "attn_post_norm")
    x = constrain(x, ("act_batch", "act_length", "act_embed"))
    h = _norm(config, x, layer["mlp_norm"])
    gate = _project(h, layer, "w_gate", 1, dt, scale)
    up = _project(h, layer, "w_up", 1, dt, scale)
    # Gemma's GeGLU gates with tanh-approximated GELU (HF gelu_pytorch_tanh).
    gated = jax.nn.gelu(gate, approximate=True) if config.gelu_mlp else jax.nn.silu(gate)
    act = constrain(gated * up, ("act_batch", "act_length", "act_mlp"))
    x = x + _post_norm(config, _project(act, layer, "w_down", 1, dt, scale), layer,
                       "mlp_post_norm")
    return constrain(x, ("act_batch", "act_length", "act_embed")), extra


def _post_norm(config, out, layer, name):
    """A sublayer's output as added to the residual: normalised first under sandwich norms."""
    return _norm(config, out, layer[name]) if config.sandwich_norms else out


def embed_tokens(params, config, ids):
    x = params["embed"].astype(config.dtype)[ids]
    if config.scale_embeddings:
        # sqrt(D) rounded to the compute dtype first, as HF does (55.5, not 55.43, for D=3072
        # in bfloat16), so bf16 runs match HF's bf16 numerics.
        x = x * jnp.asarray(math.sqrt(config.hidden_size), config.dtype)
    return x


def unembed(params, config, hidden):
    """Final hidden [..., D] -> logits [..., V] in float32."""
    w = (params["embed"].T if config.tie_word_embeddings else params["lm_head"])
    return jnp.einsum("...d,dv->...v", hidden, w.astype(config.dtype)).astype(jnp.float32)


def prefix_tree_mask(segment_ids, branch_ids):
    """[B, T, T] attention mask of rows packed with prefix trees (True = attend).

    A row holds several segments (ids 1, 2, ...; 0 pads). A segment is one sequence (branch 0
    only) or a shared stem (branch 0) followed by continuations (branches 1, 2, ...) that each
    read the stem and themselves, causally, never each other.
    """
    T = segment_ids.shape[1]
    causal = jnp.tril(jnp.ones((T, T), bool))
    same_segment = segment_ids[:, :, None] == segment_ids[:, None, :]
    visible_branch = ((branch_ids[:, None, :] == 0)
                      | (branch_ids[:, :, None] == branch_ids[:, None, :]))
    return causal & same_segment & visible_branch


def hidden_states(params, config: ModelConfig, ids, positions=None,
                  constrain: Constrain = _no_constraint, mask=None, remat: bool = False):
    """Full-sequence forward up to the final norm: ids [B, T] -> [B, T, D]. Causal unless
    `mask` [B, T, T] says otherwise (packed rows: `prefix_tree_mask`, with their positions).

    With `remat` each layer is rematerialised under differentiation: the backward pass keeps
    only every layer's input [B, T, D] and recomputes the rest of the layer, about a third more
    FLOPs for activations that no longer grow with the MLP and attention widths."""
    B, T = ids.shape
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    if mask is None:
        mask = jnp.broadcast_to(jnp.tril(jnp.ones((T, T), bool)), (B, T, T))

    def body(x, layer_and_schedule):
        layer, schedule = layer_and_schedule
        layer_mask = _layer_mask(config, mask, schedule["sliding"], positions, positions)

        def kv_fn(k, v):
            return k, v, layer_mask, None

        x, _ = _layer(config, x, layer, positions, schedule["inv_freq"], kv_fn, constrain)
        return x, None

    if remat:
        body = jax.checkpoint(body, prevent_cse=False)
    x = constrain(embed_tokens(params, config, ids), ("act_batch", "act_length", "act_embed"))
    x, _ = jax.lax.scan(body, x, (params["layers"], layer_schedule(config)))
    return _norm(config, x, params["final_norm"])


def forward(params, config: ModelConfig, ids, positions=None,
            constrain: Constrain = _no_constraint):
    """Full-sequence causal forward: ids int32[B, T] -> logits float32[B, T, V]."""
    h = hidden_states(params, config, ids, positions, constrain)
    return constrain(unembed(params, config, h), ("act_batch", "act_length", "act_vocab"))


def token_logprobs(params, config: ModelConfig, ids, targets, *, chunk: int = 128,
                   constrain: Constrain = _no_constraint):
    """log p(targets[:, t] | ids[:, :t+1]) and the entropy at each position, both [B, T].

    Logits are formed `chunk` positions at a time, so at most [B, chunk, V] exists at once.
    """
    h = hidden_states(params, config, ids, constrain=constrain)
    return logprobs_from_hidden(params, config, h, targets, chunk=chunk)


def logprobs_from_hidden(params, config, h, targets, *, chunk: int = 128):
    B, T, D = h.shape
    chunk = min(chunk, T)
    pad = (-T) % chunk
    h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
    tg = jnp.pad(targets, ((0, 0), (0, pad)))
    n = h.shape[1] // chunk
    h = h.reshape(B, n, chunk, D).swapaxes(0, 1)
    tg = tg.reshape(B, n, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def one(hc, tc):
        logits = unembed(params, config, hc)
        logp = jax.nn.log_softmax(logits, axis=-1)
        picked = jnp.take_along_axis(logp, tc[..., None], axis=-1)[..., 0]
        entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
        return picked, entropy

    picked, entropy = jax.lax.map(lambda a: one(*a), (h, tg))
    unchunk = lambda a: a.swapaxes(0, 1).reshape(B, n * chunk)[:, :T]
    return unchunk(picked), unchunk(entropy)


# ------------------------------------------------------------------------------ KV cache


def init_cache(config: ModelConfig, batch: int, max_len: int, dtype=None) -> dict:
    shape = (config.num_layers, batch, max_len, config.num_kv_heads, config.head_dim)
    dtype = dtype or config.dtype
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


def forward_cached(params, config: ModelConfig, ids, cache: dict, lengths,
                   constrain: Constrain = _no_constraint, logits_at=None,
                   window: Optional[int] = None):
    """Append ids [B, T] to a KV cache and return (logits [B, T, V], new cache).

    With `logits_at` (int [B]) only that block position of each row is unembedded and the
    logits are [B, V]: a prefill needs just the last real token, and the vocabulary projection
    dominates small models.

    With `window` (static) attention reads only the first `window` cache slots; the caller
    guarantees lengths[b] + T <= window. Attention cost then follows the dialogue's length, not
    the cache's capacity (a fresh prompt's prefill attends over its own block only).

    Row b's tokens take positions lengths[b] .. lengths[b] + T - 1; query t attends to cache
    slots j <= lengths[b] + t (slot j holds position j), on sliding-window layers only the last
    `config.sliding_window` of them. Right padding inside the T block is harmless: the caller
    advances lengths by the number of real tokens, so padded slots are overwritten later.
    The caller keeps lengths[b] + T <= S.
    """
    B, T = ids.shape
    S = window or cache["k"].shape[2]
    lengths = lengths.astype(jnp.int32)
    positions = lengths[:, None] + jnp.arange(T, dtype=jnp.int32)[None, :]
    slots = jnp.arange(S, dtype=jnp.int32)[None, :]
    mask = slots[:, None, :] <= positions[:, :, None]
    rows = jnp.arange(B)[:, None]

    def body(carry, layer_schedule_index):
        x, ck, cv = carry
        layer, schedule, i = layer_schedule_index
        layer_mask = _layer_mask(config, mask, schedule["sliding"], positions, slots)

        def kv_fn(k, v):
            nk = ck.at[i, rows, positions].set(k.astype(ck.dtype), mode="drop")
            nv = cv.at[i, rows, positions].set(v.astype(cv.dtype), mode="drop")
            keys, values = nk[i, :, :S], nv[i, :, :S]
            return keys.astype(k.dtype), values.astype(v.dtype), layer_mask, (nk, nv)

        x, (ck, cv) = _layer(config, x, layer, positions, schedule["inv_freq"], kv_fn,
                             constrain)
        return (x, ck, cv), None

    x = constrain(embed_tokens(params, config, ids), ("act_batch", "act_length", "act_embed"))
    (x, ck, cv), _ = jax.lax.scan(
        body, (x, cache["k"], cache["v"]),
        (params["layers"], layer_schedule(config), jnp.arange(config.num_layers)))
    if logits_at is not None:
        x = x[jnp.arange(B), logits_at]
    h = _norm(config, x, params["final_norm"])
    names = ("act_batch", "act_vocab") if logits_at is not None else (
        "act_batch", "act_length", "act_vocab")
    logits = constrain(unembed(params, config, h), names)
    return logits, {"k": ck, "v": cv}

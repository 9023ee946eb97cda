"""Model hyper-parameters, the HF config.json mapping, and named presets."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import jax.numpy as jnp

# HF `architectures[0]` -> our family name. One transformer covers every family; the family
# switches q/k/v bias (qwen2), q/k RMSNorm (qwen3, gemma3) and Gemma 3's block (the properties
# below).
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Gemma3ForCausalLM": "gemma3",
}
_FAMILY_TO_ARCH = {v: k for k, v in ARCHITECTURES.items()}
_MODEL_TYPE = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3_text"}
_MODEL_TYPE_TO_ARCH = {t: _FAMILY_TO_ARCH[f] for f, t in _MODEL_TYPE.items()}
# Gemma3TextConfig's defaults for the keys a Gemma 3 config.json may leave out (published ones
# omit tie_word_embeddings, which is True, unlike the other families' default).
_GEMMA3_DEFAULTS = {"tie_word_embeddings": True, "max_position_embeddings": 131072,
                    "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 4096,
                    "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0}
_SLIDING, _FULL = "sliding_attention", "full_attention"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    family: str  # "llama" | "qwen2" | "qwen3" | "gemma3"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    # RoPE frequency scaling as sorted (key, value) pairs, rope_type among them: "llama3"
    # (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings) or "linear"
    # (factor; Gemma 3, global layers only); None for plain RoPE.
    rope_scaling: Optional[tuple] = None
    # Layers whose attention reads only the last `sliding_window` positions (one bool per layer;
    # None: none do), with their own unscaled RoPE base (Gemma 3's local layers).
    sliding_layers: Optional[tuple] = None
    sliding_window: Optional[int] = None
    rope_local_theta: float = 10000.0
    # Attention scores are scaled by query_pre_attn_scalar ** -0.5 (None: head_dim ** -0.5).
    query_pre_attn_scalar: Optional[float] = None
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 8192
    bos_token_id: Optional[int] = None
    eos_token_id: Any = None
    pad_token_id: Optional[int] = None
    # Numerics: parameters are stored in param_dtype (f32 master), matmuls run in dtype.
    param_dtype: Any = jnp.float32
    dtype: Any = jnp.float32
    # LoRA scale alpha / rank; used only when the params tree carries adapters.
    lora_scale: float = 1.0

    def __post_init__(self):
        if self.sliding_layers is not None and len(self.sliding_layers) != self.num_layers:
            raise ValueError(f"sliding_layers has {len(self.sliding_layers)} entries for "
                             f"{self.num_layers} layers; give one per layer")
        if self.sliding_window is None and any(self.sliding_layers or ()):
            raise ValueError("sliding_layers marks sliding-window layers but sliding_window is "
                             "None; set sliding_window")

    @property
    def attention_bias(self) -> bool:
        return self.family == "qwen2"

    @property
    def qk_norm(self) -> bool:
        return self.family in ("qwen3", "gemma3")

    @property
    def norm_plus_one(self) -> bool:
        """Gemma's RMSNorm scales by (1 + weight), so its weights start at zero."""
        return self.family == "gemma3"

    @property
    def sandwich_norms(self) -> bool:
        """Gemma 3 also normalises the attention and MLP outputs before each residual add."""
        return self.family == "gemma3"

    @property
    def gelu_mlp(self) -> bool:
        """GeGLU (tanh-approximated GELU gate, HF gelu_pytorch_tanh) instead of SwiGLU."""
        return self.family == "gemma3"

    @property
    def scale_embeddings(self) -> bool:
        """Gemma multiplies the token embeddings by sqrt(hidden_size)."""
        return self.family == "gemma3"

    @property
    def attention_scale(self) -> float:
        return (self.query_pre_attn_scalar or self.head_dim) ** -0.5

    @property
    def layer_is_sliding(self) -> tuple:
        """One bool per layer: True where it attends through the sliding window."""
        return self.sliding_layers or (False,) * self.num_layers

    @property
    def num_params(self) -> int:
        d, f, h, k, hd = (self.hidden_size, self.intermediate_size, self.num_heads,
                          self.num_kv_heads, self.head_dim)
        norms = 4 if self.sandwich_norms else 2
        per_layer = d * hd * (h + 2 * k) + h * hd * d + 3 * d * f + norms * d
        if self.attention_bias:
            per_layer += hd * (h + 2 * k)
        if self.qk_norm:
            per_layer += 2 * hd
        embed = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embed + d

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    def rope_scaling_dict(self) -> Optional[dict]:
        return dict(self.rope_scaling) if self.rope_scaling else None

    # ---------------------------------------------------------------- HF interop
    @classmethod
    def from_hf_dict(cls, cfg: dict, source: str = "config.json") -> "ModelConfig":
        archs = cfg.get("architectures") or []
        # Freshly built configs carry only model_type; saved checkpoints carry architectures.
        arch = archs[0] if archs else _MODEL_TYPE_TO_ARCH.get(cfg.get("model_type"))
        if arch not in ARCHITECTURES:
            raise ValueError(
                f"{source}: unsupported architecture {arch!r}; expected one of "
                f"{sorted(ARCHITECTURES)}")
        family = ARCHITECTURES[arch]
        if family == "gemma3":
            cfg = {**_GEMMA3_DEFAULTS, **cfg}
        required = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads"]
        missing = [k for k in required if k not in cfg]
        if missing:
            raise ValueError(f"{source}: missing required keys {missing}")
        heads = cfg["num_attention_heads"]
        family_fields = (_gemma3_fields(cfg, source) if family == "gemma3"
                         else _rope_fields(cfg, source))
        return cls(
            family=family,
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 8192)),
            bos_token_id=cfg.get("bos_token_id"),
            # A list in HF configs; a tuple here so the config stays hashable (a jit static).
            eos_token_id=(tuple(cfg["eos_token_id"]) if isinstance(cfg.get("eos_token_id"), list)
                          else cfg.get("eos_token_id")),
            pad_token_id=cfg.get("pad_token_id"),
            **family_fields,
        )

    @classmethod
    def from_hf_file(cls, path: str) -> "ModelConfig":
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no config.json; point model.path at an HF model "
                                    "directory") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_hf_dict(cfg, source=path)

    def to_hf_dict(self) -> dict:
        cfg = {
            "architectures": [_FAMILY_TO_ARCH[self.family]],
            "model_type": _MODEL_TYPE[self.family],
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "torch_dtype": "float32",
        }
        if self.family == "gemma3":
            cfg.update(self._gemma3_hf_fields())
        else:
            cfg["hidden_act"] = "silu"
        if self.rope_scaling:
            cfg["rope_scaling"] = dict(self.rope_scaling)
        if self.family == "llama":
            cfg["attention_bias"] = False
            cfg["mlp_bias"] = False
        if self.family == "qwen3":
            cfg["attention_bias"] = False
        if self.bos_token_id is not None:
            cfg["bos_token_id"] = self.bos_token_id
        if self.eos_token_id is not None:
            eos = self.eos_token_id
            cfg["eos_token_id"] = list(eos) if isinstance(eos, tuple) else eos
        if self.pad_token_id is not None:
            cfg["pad_token_id"] = self.pad_token_id
        return cfg

    def _gemma3_hf_fields(self) -> dict:
        # Gemma3TextConfig applies the top-level rope_theta and rope_scaling to the global layers
        # and rope_local_base_freq to the sliding ones (transformers 4 and 5 both read these).
        return {"hidden_activation": "gelu_pytorch_tanh",
                "query_pre_attn_scalar": self.query_pre_attn_scalar or self.head_dim,
                "sliding_window": self.sliding_window,
                "layer_types": [_SLIDING if s else _FULL for s in self.layer_is_sliding],
                "rope_local_base_freq": self.rope_local_theta,
                "attention_bias": False}


_SCALING_KEYS = {"llama3": ("factor", "low_freq_factor", "high_freq_factor",
                            "original_max_position_embeddings"),
                 "linear": ("factor",)}


def _rope_scaling(params: Optional[dict], allowed: tuple, source: str, where: str):
    """HF rope parameters -> our sorted (key, value) pairs (rope_type included); None for
    plain RoPE."""
    params = params or {}
    kind = params.get("rope_type", params.get("type")) or "default"
    if kind == "default":
        return None
    if kind not in allowed:
        expected = " or ".join(repr(a) for a in allowed) or "'default'"
        raise ValueError(f"{source}: unsupported {where} type {kind!r}; expected {expected} "
                         "or none")
    return tuple(sorted([("rope_type", kind)] + [(k, params[k]) for k in _SCALING_KEYS[kind]]))


def _rope_fields(cfg: dict, source: str) -> dict:
    """Llama / Qwen RoPE: one base for every layer, optionally llama3-scaled."""
    # transformers 5 nests rope_theta and the scaling rule in rope_parameters.
    rope = cfg.get("rope_parameters") or {}
    theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))
    scaling = _rope_scaling(cfg.get("rope_scaling") or rope, ("llama3",), source, "rope_scaling")
    return {"rope_theta": float(theta), "rope_scaling": scaling}


def _gemma3_fields(cfg: dict, source: str) -> dict:
    """Gemma 3's layer kinds, window, per-kind RoPE and attention scale, read as
    Gemma3TextConfig reads them: rope_theta, rope_scaling (global layers) and
    rope_local_base_freq (sliding layers) at the top level, or transformers 5's
    rope_parameters keyed by layer type, whose rope_theta wins over the top-level one."""
    for key in ("final_logit_softcapping", "attn_logit_softcapping"):
        if cfg.get(key) is not None:
            raise ValueError(f"{source}: {key}={cfg[key]} is not supported; set it to null "
                             "(as Gemma 3 does)")
    for key in ("use_bidirectional_attention", "attention_bias"):
        if cfg.get(key):
            raise ValueError(f"{source}: {key}=true is not supported; set it to false (causal "
                             "Gemma 3 without attention biases)")
    act = cfg.get("hidden_activation", "gelu_pytorch_tanh")
    if act != "gelu_pytorch_tanh":
        raise ValueError(f"{source}: hidden_activation {act!r} is not supported; expected "
                         "'gelu_pytorch_tanh'")
    layers = cfg["num_hidden_layers"]
    types = cfg.get("layer_types")
    if types is None:  # older configs: every sliding_window_pattern-th layer is global
        every = cfg.get("sliding_window_pattern", 6)
        types = [_SLIDING if (i + 1) % every else _FULL for i in range(layers)]
    if len(types) != layers or set(types) - {_SLIDING, _FULL}:
        raise ValueError(f"{source}: layer_types must list {layers} entries, each "
                         f"{_SLIDING!r} or {_FULL!r}")
    nested = cfg.get("rope_parameters") or {}
    full = {**(nested.get(_FULL) or {}), **(cfg.get("rope_scaling") or {})}
    local = nested.get(_SLIDING) or {}
    _rope_scaling(local, (), source, f"{_SLIDING} rope")
    return {
        "rope_theta": float(full.get("rope_theta", cfg.get("rope_theta", 1e6))),
        "rope_scaling": _rope_scaling(full, ("linear",), source, f"{_FULL} rope"),
        "rope_local_theta": float(local.get("rope_theta", cfg.get("rope_local_base_freq", 1e4))),
        "sliding_layers": tuple(t == _SLIDING for t in types),
        "sliding_window": cfg["sliding_window"],
        "query_pre_attn_scalar": cfg["query_pre_attn_scalar"],
    }


def _llama3_scaling(factor, original):
    return tuple(sorted({"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0,
                         "original_max_position_embeddings": original}.items()))


def _gemma3(vocab, hidden, inter, layers, heads, kv_heads, head_dim, window, max_positions,
            query_pre_attn_scalar=256, linear_factor=None):
    """A Gemma 3 text model: every sixth layer global (RoPE base 1e6, linearly scaled on the
    4B and larger), the others a sliding window (base 1e4)."""
    scaling = (tuple(sorted({"rope_type": "linear", "factor": linear_factor}.items()))
               if linear_factor else None)
    return ModelConfig("gemma3", vocab, hidden, inter, layers, heads, kv_heads, head_dim,
                       rope_theta=1e6, rope_scaling=scaling,
                       sliding_layers=tuple(bool((i + 1) % 6) for i in range(layers)),
                       sliding_window=window, rope_local_theta=10000.0,
                       query_pre_attn_scalar=query_pre_attn_scalar, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, max_position_embeddings=max_positions,
                       bos_token_id=2, eos_token_id=(1, 106), pad_token_id=0)


PRESETS: dict[str, ModelConfig] = {
    "smollm2-135m": ModelConfig("llama", 49152, 576, 1536, 30, 9, 3, 64, rope_theta=100000.0,
                                rms_norm_eps=1e-5, tie_word_embeddings=True,
                                bos_token_id=1, eos_token_id=2),
    "qwen2.5-0.5b": ModelConfig("qwen2", 151936, 896, 4864, 24, 14, 2, 64, rope_theta=1e6,
                                rms_norm_eps=1e-6, tie_word_embeddings=True,
                                max_position_embeddings=32768, eos_token_id=151645),
    "qwen2.5-7b": ModelConfig("qwen2", 152064, 3584, 18944, 28, 28, 4, 128, rope_theta=1e6,
                              rms_norm_eps=1e-6, max_position_embeddings=32768,
                              eos_token_id=151645),
    "qwen3-0.6b": ModelConfig("qwen3", 151936, 1024, 3072, 28, 16, 8, 128, rope_theta=1e6,
                              rms_norm_eps=1e-6, tie_word_embeddings=True,
                              max_position_embeddings=40960, eos_token_id=151645),
    "qwen3-1.7b": ModelConfig("qwen3", 151936, 2048, 6144, 28, 16, 8, 128, rope_theta=1e6,
                              rms_norm_eps=1e-6, tie_word_embeddings=True,
                              max_position_embeddings=40960, eos_token_id=151645),
    "qwen3-8b": ModelConfig("qwen3", 151936, 4096, 12288, 36, 32, 8, 128, rope_theta=1e6,
                            rms_norm_eps=1e-6, max_position_embeddings=40960,
                            eos_token_id=151645),
    "qwen3-14b": ModelConfig("qwen3", 151936, 5120, 17408, 40, 40, 8, 128, rope_theta=1e6,
                             rms_norm_eps=1e-6, max_position_embeddings=40960,
                             eos_token_id=151645),
    "llama3.2-1b": ModelConfig("llama", 128256, 2048, 8192, 16, 32, 8, 64, rope_theta=500000.0,
                               rope_scaling=_llama3_scaling(32.0, 8192), rms_norm_eps=1e-5,
                               tie_word_embeddings=True, max_position_embeddings=131072,
                               bos_token_id=128000, eos_token_id=128009),
    "llama3.1-8b": ModelConfig("llama", 128256, 4096, 14336, 32, 32, 8, 128,
                               rope_theta=500000.0, rope_scaling=_llama3_scaling(8.0, 8192),
                               rms_norm_eps=1e-5, max_position_embeddings=131072,
                               bos_token_id=128000, eos_token_id=128009),
    "gemma3-270m": _gemma3(262144, 640, 2048, 18, 4, 1, 256, 512, 32768),
    "gemma3-1b": _gemma3(262144, 1152, 6912, 26, 4, 1, 256, 512, 32768),
    "gemma3-4b": _gemma3(262208, 2560, 10240, 34, 8, 4, 256, 1024, 131072, linear_factor=8.0),
    "gemma3-12b": _gemma3(262208, 3840, 15360, 48, 16, 8, 256, 1024, 131072,
                          linear_factor=8.0),
    "gemma3-27b": _gemma3(262208, 5376, 21504, 62, 32, 16, 128, 1024, 131072,
                          query_pre_attn_scalar=168, linear_factor=8.0),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


DTYPE_NAMES = ("float32", "bfloat16", "float16")


def resolve_dtype(name_or_dtype) -> Any:
    if isinstance(name_or_dtype, str):
        table = {"float32": jnp.float32, "f32": jnp.float32, "bfloat16": jnp.bfloat16,
                 "bf16": jnp.bfloat16, "float16": jnp.float16, "f16": jnp.float16}
        if name_or_dtype not in table:
            raise ValueError(f"unknown dtype {name_or_dtype!r}; use one of {sorted(table)}")
        return table[name_or_dtype]
    return name_or_dtype


def is_hf_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))

"""Model hyper-parameters, the HF config.json mapping, and named presets."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import jax.numpy as jnp

# HF `architectures[0]` -> our family name. One transformer covers all three families;
# the family only switches q/k/v bias (qwen2) and q/k RMSNorm (qwen3).
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
_FAMILY_TO_ARCH = {v: k for k, v in ARCHITECTURES.items()}
_MODEL_TYPE = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    family: str  # "llama" | "qwen2" | "qwen3"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    # Llama-3 style frequency scaling: dict with factor, low_freq_factor, high_freq_factor,
    # original_max_position_embeddings; None for plain RoPE.
    rope_scaling: Optional[tuple] = None
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 8192
    bos_token_id: Optional[int] = None
    eos_token_id: Any = None
    # Numerics: parameters are stored in param_dtype (f32 master), matmuls run in dtype.
    param_dtype: Any = jnp.float32
    dtype: Any = jnp.float32
    # LoRA scale alpha / rank; used only when the params tree carries adapters.
    lora_scale: float = 1.0

    @property
    def attention_bias(self) -> bool:
        return self.family == "qwen2"

    @property
    def qk_norm(self) -> bool:
        return self.family == "qwen3"

    @property
    def num_params(self) -> int:
        d, f, h, k, hd = (self.hidden_size, self.intermediate_size, self.num_heads,
                          self.num_kv_heads, self.head_dim)
        per_layer = d * hd * (h + 2 * k) + h * hd * d + 3 * d * f + 2 * d
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
        arch = archs[0] if archs else _FAMILY_TO_ARCH.get(cfg.get("model_type"))
        if arch not in ARCHITECTURES:
            raise ValueError(
                f"{source}: unsupported architecture {arch!r}; expected one of "
                f"{sorted(ARCHITECTURES)}")
        family = ARCHITECTURES[arch]
        required = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads"]
        missing = [k for k in required if k not in cfg]
        if missing:
            raise ValueError(f"{source}: missing required keys {missing}")
        heads = cfg["num_attention_heads"]
        # transformers 5 nests rope_theta and the scaling rule in rope_parameters.
        rope = cfg.get("rope_parameters") or {}
        theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))
        scaling = cfg.get("rope_scaling") or rope or None
        if scaling:
            kind = scaling.get("rope_type", scaling.get("type"))
            if kind in ("default", None):
                scaling = None
            elif kind != "llama3":
                raise ValueError(f"{source}: unsupported rope_scaling type {kind!r}; "
                                 "expected 'llama3' or none")
        if scaling:
            scaling = tuple(sorted(
                (k, scaling[k]) for k in ("factor", "low_freq_factor", "high_freq_factor",
                                          "original_max_position_embeddings")))
        return cls(
            family=family,
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            rope_theta=float(theta),
            rope_scaling=scaling,
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 8192)),
            bos_token_id=cfg.get("bos_token_id"),
            # A list in HF configs; a tuple here so the config stays hashable (a jit static).
            eos_token_id=(tuple(cfg["eos_token_id"]) if isinstance(cfg.get("eos_token_id"), list)
                          else cfg.get("eos_token_id")),
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
            "hidden_act": "silu",
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "torch_dtype": "float32",
        }
        if self.rope_scaling:
            cfg["rope_scaling"] = {"rope_type": "llama3", **dict(self.rope_scaling)}
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
        return cfg


def _llama3_scaling(factor, original):
    return tuple(sorted({"factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": original}.items()))


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

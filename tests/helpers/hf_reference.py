"""Tiny random HF models of each family, shared by the numerical reference tests."""
import os

import numpy as np
import torch
import transformers
from safetensors import safe_open

from negojax.checkpoints.hf_layout import params_from_state_dict
from negojax.models.config import ModelConfig

_COMMON = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, head_dim=8,
               max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0)

FAMILIES = {
    "llama_tied": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                   dict(tie_word_embeddings=True)),
    "llama_untied_mha": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                         dict(tie_word_embeddings=False, num_key_value_heads=4)),
    "llama3_scaled": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
                      dict(tie_word_embeddings=False, rope_theta=500000.0,
                           rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 64})),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
              dict(tie_word_embeddings=False)),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM,
              dict(tie_word_embeddings=True)),
}


def make_hf_model(family: str, seed: int = 0):
    cfg_cls, model_cls, extra = FAMILIES[family]
    return build_hf_model(model_cls, cfg_cls(**{**_COMMON, **extra}), seed)


def build_hf_model(model_cls, cfg, seed: int = 0):
    """A random `model_cls(cfg)` in eval mode, its norms and biases perturbed."""
    torch.manual_seed(seed)
    model = model_cls(cfg).eval()
    # Random init leaves norms at 1 (Gemma's at 0) and biases at 0; perturb them so the test
    # sees them.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def negojax_from_hf(model) -> tuple[ModelConfig, dict]:
    config = ModelConfig.from_hf_dict(model.config.to_dict())
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return config, params_from_state_dict(config, sd.__getitem__)


def hf_logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(ids, dtype=torch.long)).logits.float().numpy()


def assert_tensors_equal_reference(model_dir: str, reference: dict) -> None:
    """Every tensor of model_dir/model.safetensors equals transformers' state dict `reference`
    bit for bit, and nothing but the tied lm_head (which transformers lists separately) is
    missing."""
    with safe_open(os.path.join(model_dir, "model.safetensors"), "numpy") as f:
        names = set(f.keys())
        for name in names:
            np.testing.assert_array_equal(f.get_tensor(name), reference[name].numpy(),
                                          err_msg=name)
    assert names == set(reference) - {"lm_head.weight"}

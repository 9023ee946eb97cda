"""Checkpoint interop: HF safetensors directories, GGUF import, the embedded default model."""
from negojax.checkpoints.default_model import default_model_dir
from negojax.checkpoints.gguf import gguf_to_hf_dir
from negojax.checkpoints.hf import export_hf, load_hf_config, load_hf_params

__all__ = ["default_model_dir", "export_hf", "gguf_to_hf_dir", "load_hf_config", "load_hf_params"]

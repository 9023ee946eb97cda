"""Checkpoint interop: HF safetensors directories, GGUF import, the embedded default model."""
from negojax.checkpoints.default_model import default_model_dir
from negojax.checkpoints.gguf import gguf_to_hf_dir
from negojax.checkpoints.hf import export_hf, load_hf_config, load_hf_params

__all__ = ["TrainCheckpointer", "default_model_dir", "export_hf", "gguf_to_hf_dir", "load_hf_config",
           "load_hf_params"]


def __getattr__(name):
    # TrainCheckpointer pulls in orbax (~1 s); only training needs it, so import it on first use.
    if name == "TrainCheckpointer":
        from negojax.checkpoints.orbax_checkpoint import TrainCheckpointer
        return TrainCheckpointer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

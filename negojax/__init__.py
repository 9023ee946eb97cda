"""negojax: teach language models to negotiate, in JAX.

Public API (stable): load_model, Model, export_hf, default_model_dir, generate, generate_ids,
chat. Subpackages: negojax.data, negojax.sampling, negojax.negotiation, negojax.rewards,
negojax.rl, negojax.parallel, negojax.eval.
"""
from negojax.checkpoints import default_model_dir
from negojax.api import Model, chat, export_hf, generate, generate_ids, load_model

__all__ = ["Model", "chat", "default_model_dir", "export_hf", "generate", "generate_ids",
           "load_model"]
__version__ = "0.1.0"

"""A method config run in miniature on CPU: the shipped config with only the model (the same
architecture at tiny size, with the family's real tokenizer and template), the mesh (8 fake
devices) and what a laptop cannot reach (GCS, W&B, the judge's endpoint, the pod's coordinator)
replaced."""
import os

import numpy as np

from negojax.checkpoints import export_hf
from negojax.models import transformer
from negojax.models.config import PRESETS

MESH = dict(data=1, fsdp=4, tensor=2)
TINY = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
            head_dim=16)


def stop_prone_checkpoint(preset: str, tokenizer_dir: str, out_dir: str, stop_token: str,
                          seed: int = 0) -> str:
    """An HF checkpoint of `preset`'s architecture at TINY size whose turns end after a few
    tokens, as a trained model's do: every embedding carries one large constant feature that
    the unembedding reads as the stop token, so at the shipped temperature a turn stops with
    probability about one half per token (a plain random model would fill every turn's
    256-token budget)."""
    from negojax.tokenization import Tokenizer
    tokenizer = Tokenizer(tokenizer_dir)
    config = PRESETS[preset].replace(vocab_size=tokenizer.vocab_size, **TINY)
    params = transformer.init_params(config, seed)
    params = {k: np.array(v) if k != "layers" else {n: np.array(w) for n, w in v.items()}
              for k, v in params.items()}
    stop = tokenizer.token_to_id(stop_token)
    params["embed"][:, 0] = 8.0
    for name in ("wo", "w_down"):
        params["layers"][name] *= 0.1
    # After the final norm the constant feature is ~sqrt(D) = 8; reading it as 8.3 more logit
    # for the stop token than for the ~152k others (near 0) is about even odds at temperature
    # 0.7. Tied, every token reads the feature as 8 (a shift softmax ignores) and the stop token
    # a little more.
    bump = 8.3 / 8.0
    if config.tie_word_embeddings:
        params["embed"][stop, 0] += bump
    else:
        params["lm_head"][0] = 0.0
        params["lm_head"][0, stop] = bump
    export_hf(params, config, tokenizer_dir, out_dir)
    return out_dir


def miniature_flags(model_dir: str, judge_url: str) -> list[str]:
    return [f"--config.model.path={model_dir}", "--config.distributed=False",
            "--config.wandb.enabled=False", f"--config.judge.base_url={judge_url}",
            # One step: the warm-up (10 shipped) must end before the last step.
            "--config.train.steps=1", "--config.optim.warmup_steps=0",
            *(f"--config.mesh.{k}={v}" for k, v in MESH.items())]


def fake_devices_env() -> dict:
    return {"XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                         "--xla_force_host_platform_device_count=8".strip()}

"""The public model handle: load a checkpoint or preset, run it, generate, chat, export."""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from negojax import storage
from negojax.checkpoints import default_model_dir, export_hf as _export_params
from negojax.checkpoints import gguf_to_hf_dir, load_hf_config, load_hf_params
from negojax.checkpoints.default_model import cache_dir
from negojax.models import transformer
from negojax.models.config import PRESETS, ModelConfig, resolve_dtype
from negojax.sampling import SamplingParams, sample
from negojax.tokenization import Tokenizer, has_tokenizer, load_tokenizer


@dataclasses.dataclass
class Model:
    """A config, a params pytree and (for checkpoints) a tokenizer. `rules` places arrays on a
    mesh when set (see negojax.parallel)."""
    config: ModelConfig
    params: dict
    tokenizer: Optional[Tokenizer] = None
    source_dir: Optional[str] = None
    rules: object = None

    def logits(self, ids) -> jax.Array:
        """ids int32[B, T] -> float32[B, T, V] (full causal forward)."""
        return _jit_forward(self.params, self.config, jnp.asarray(ids, jnp.int32))

    @property
    def stop_ids(self) -> list[int]:
        if self.tokenizer is not None:
            return list(self.tokenizer.stop_ids)
        eos = self.config.eos_token_id
        return [] if eos is None else list(eos) if isinstance(eos, tuple) else [eos]


@functools.partial(jax.jit, static_argnums=1)
def _jit_forward(params, config, ids):
    return transformer.forward(params, config, ids)


def resolve_model_dir(path: str) -> str:
    """'default', an HF directory (local or in a bucket, downloaded into the cache), or a
    .gguf file (converted once into the cache)."""
    if path == "default":
        return default_model_dir()
    if storage.is_remote(path):
        return storage.local_copy(path)
    if path.endswith(".gguf"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: GGUF file not found")
        stem = os.path.splitext(os.path.basename(path))[0]
        out = os.path.join(cache_dir(), "models", f"{stem}-{os.path.getsize(path)}")
        if not os.path.isfile(os.path.join(out, "config.json")):
            gguf_to_hf_dir(path, out)
        return out
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{path}: not an HF model directory, a .gguf file, 'default' or a preset "
            f"({', '.join(sorted(PRESETS))})")
    return path


def load_model(path_or_preset: str, *, dtype="float32", param_dtype="float32",
               random_init: bool = False, seed: int = 0, rules=None,
               overrides: Optional[dict] = None, tokenizer: Optional[str] = None,
               chat_template: Optional[str] = None, thinking: bool = False) -> Model:
    """Load an HF directory, a GGUF file, "default" (embedded SmolLM2-135M-Instruct) or a
    preset name. `random_init=True` with a preset builds random weights (no tokenizer);
    with a checkpoint it keeps the architecture and tokenizer but re-initialises weights.
    `overrides` (ModelConfig fields, random_init only) re-shape the architecture, which is how
    tiny test models keep a real checkpoint's tokenizer. `dtype` is the compute dtype;
    `param_dtype` the stored (master) dtype.

    The tokenizer comes from the checkpoint, or from the directory `tokenizer` names; a
    weights-only directory loads with `Model.tokenizer` None, as transformers loads one.
    `chat_template` (a .jinja file) replaces the checkpoint's template; `thinking` reaches
    templates as `enable_thinking`."""
    if overrides and not random_init:
        raise ValueError("overrides change the architecture, so they need random_init=True")
    dtypes = dict(dtype=resolve_dtype(dtype), param_dtype=resolve_dtype(param_dtype))
    if path_or_preset in PRESETS and not os.path.exists(path_or_preset):
        if not random_init:
            raise ValueError(f"preset {path_or_preset!r} has no weights; pass random_init=True "
                             "or point at an HF directory / GGUF file")
        model_dir, config = None, PRESETS[path_or_preset]
    else:
        model_dir = resolve_model_dir(path_or_preset)
        config = load_hf_config(model_dir)
    config = config.replace(**dtypes, **(overrides or {}))
    tokenizer_dir = storage.local_copy(tokenizer) if tokenizer else model_dir
    tokenizer = (load_tokenizer(tokenizer_dir, chat_template=chat_template, thinking=thinking)
                 if tokenizer_dir is not None and has_tokenizer(tokenizer_dir) else None)
    if random_init:
        params = transformer.place_params(transformer.init_params(config, seed), rules)
    else:
        shardings = None if rules is None else transformer.param_shardings(
            jax.eval_shape(lambda: transformer.init_params(config)), rules)
        params = load_hf_params(model_dir, config, dtype=np.dtype(dtypes["param_dtype"]),
                                shardings=shardings)
    return Model(config, params, tokenizer, model_dir, rules)


def export_hf(model: Model, out_dir: str, *, dtype: str = "float32") -> str:
    """Write the model as an HF directory, local or in a bucket (LoRA adapters must be merged
    first); returns out_dir."""
    params = jax.device_get(model.params)
    with storage.staged_dir(out_dir) as local:
        _export_params(params, model.config, model.source_dir, local, dtype=dtype)
    return out_dir


def generate_ids(model: Model, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
                 seed: int = 0) -> list[list[int]]:
    """Token-level generation: new ids per prompt, stop token excluded. A prompt that leaves the
    model's context no room for a reply is a ValueError (the sampler would decode past it)."""
    context = model.config.max_position_embeddings
    for i, prompt in enumerate(prompts):
        if len(prompt) >= context:
            raise ValueError(f"a prompt of {len(prompt)} tokens (index {i}) leaves no room in "
                             f"the model's context of {context} positions; shorten it")
    out = sample(model.params, model.config, prompts, max_new_tokens=max_new_tokens,
                 sampling=SamplingParams(temperature, top_p, top_k), stop_ids=model.stop_ids,
                 seed=seed, rules=model.rules)
    stops = set(model.stop_ids)
    return [t[:-1] if t and t[-1] in stops else t for t in out.tokens]


def _need_tokenizer(model: Model):
    if model.tokenizer is None:
        raise ValueError("this model has no tokenizer (a random preset or a weights-only "
                         "directory); use generate_ids, or pass load_model(..., tokenizer=DIR)")
    return model.tokenizer


def generate(model: Model, prompts: Sequence[str], *, max_new_tokens: int,
             temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
             seed: int = 0) -> list[str]:
    """Continue each raw text prompt (no chat template); returns the new text per prompt."""
    tok = _need_tokenizer(model)
    ids = generate_ids(model, [tok.encode(p, add_special_tokens=True) for p in prompts],
                       max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                       top_k=top_k, seed=seed)
    return [tok.decode(t) for t in ids]


def chat(model: Model, messages: Sequence[dict], max_new_tokens: int = 128, *,
         temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> str:
    """The assistant's reply to role-tagged messages, greedy by default."""
    tok = _need_tokenizer(model)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True)
    reply = generate_ids(model, [ids], max_new_tokens=max_new_tokens, temperature=temperature,
                         top_p=top_p, seed=seed)[0]
    return tok.decode(reply).strip()

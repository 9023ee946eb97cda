"""Gemma 3 (text) against transformers' Gemma3ForCausalLM: logits, config spellings, HF export,
packed rows, the KV cache and the sampler past the sliding window, presets, LoRA.

The tiny models interleave sliding-window and global layers, with a window (4) shorter than the
sequences, GQA, a local RoPE base unlike the global one and linear scaling on the global layers;
an init scale of 0.2 keeps logits near 4, so dropping any of these moves them by ~1 (>> 1e-4).
"""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from hf_reference import build_hf_model, hf_logits, negojax_from_hf
from negojax.checkpoints.hf import export_hf, load_hf_config, load_hf_params
from negojax.models import lora
from negojax.models import transformer as tf
from negojax.models.config import PRESETS, ModelConfig
from negojax.parallel.mesh import make_mesh
from negojax.parallel.sharding import LogicalRules
from negojax.sampling import sample

WINDOW = 4
_TINY = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=5,
             num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=WINDOW,
             query_pre_attn_scalar=12, max_position_embeddings=256, rms_norm_eps=1e-6,
             initializer_range=0.2)
CASES = {
    # The published configs' spelling: every n-th layer global, rope_scaling for those layers.
    "pattern_linear": dict(sliding_window_pattern=3, rope_theta=1e6, rope_local_base_freq=100.0,
                           rope_scaling={"rope_type": "linear", "factor": 8.0}),
    # transformers 5's: explicit layer_types, rope_parameters per layer type; one kv head.
    "layer_types_nested": dict(
        num_key_value_heads=1,
        layer_types=["full_attention", "sliding_attention", "sliding_attention",
                     "full_attention", "sliding_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 50.0},
                         "full_attention": {"rope_type": "linear", "factor": 4.0,
                                            "rope_theta": 5e5}}),
}
IDS = np.random.default_rng(0).integers(0, 97, (2, 19))
_forward = jax.jit(tf.forward, static_argnums=1)


def make_gemma3(case: str, seed: int = 0):
    cfg = transformers.Gemma3TextConfig(**{**_TINY, **CASES[case]})
    return build_hf_model(transformers.Gemma3ForCausalLM, cfg, seed)


@pytest.fixture(scope="module")
def hf_model():
    return make_gemma3("pattern_linear")


@pytest.fixture(scope="module")
def ours(hf_model):
    return negojax_from_hf(hf_model)


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(case):
    model = make_gemma3(case)
    config, params = negojax_from_hf(model)
    assert set(config.layer_is_sliding) == {True, False}
    got, ref = np.asarray(_forward(params, config, jnp.asarray(IDS))), hf_logits(model, IDS)
    print(f"gemma3 {case}: max abs logit difference {np.abs(got - ref).max():.2e} "
          f"(logits up to {np.abs(ref).max():.1f})")
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_token_logprobs_match_transformers(hf_model, ours):
    config, params = ours
    targets = np.roll(IDS, -1, axis=1)
    logp, _ = tf.token_logprobs(params, config, jnp.asarray(IDS), jnp.asarray(targets), chunk=8)
    ref = torch.log_softmax(torch.tensor(hf_logits(hf_model, IDS)), -1).numpy()
    np.testing.assert_allclose(logp, np.take_along_axis(ref, targets[..., None], -1)[..., 0],
                               atol=1e-4)


def test_published_and_transformers5_spellings_read_alike(hf_model, ours):
    """google/gemma-3-1b's config.json spelling (no layer_types, no tie_word_embeddings, the
    global layers' scaling in rope_scaling) and transformers 5's to_dict give one config."""
    published = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
                 **{k: v for k, v in _TINY.items() if k != "initializer_range"},
                 **CASES["pattern_linear"], "hidden_activation": "gelu_pytorch_tanh",
                 "attn_logit_softcapping": None, "final_logit_softcapping": None}
    assert ModelConfig.from_hf_dict(published) == ours[0]
    assert ours[0].tie_word_embeddings and ours[0].rope_local_theta == 100.0


@pytest.mark.parametrize("key,value", [("final_logit_softcapping", 30.0),
                                       ("attn_logit_softcapping", 50.0),
                                       ("use_bidirectional_attention", True)])
def test_unsupported_gemma_options_are_one_line_errors(hf_model, key, value):
    cfg = {**hf_model.config.to_dict(), key: value}
    with pytest.raises(ValueError, match=f"{key}.*set it to") as excinfo:
        ModelConfig.from_hf_dict(cfg)
    assert "\n" not in str(excinfo.value)


def test_load_export_round_trip_through_transformers(hf_model, tmp_path):
    hf_model.save_pretrained(tmp_path / "src")
    config = load_hf_config(str(tmp_path / "src"))
    params = load_hf_params(str(tmp_path / "src"), config)
    np.testing.assert_allclose(_forward(params, config, jnp.asarray(IDS)),
                               hf_logits(hf_model, IDS), atol=1e-4, rtol=0)

    out = export_hf(params, config, None, str(tmp_path / "out"))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert isinstance(reloaded, transformers.Gemma3ForCausalLM)
    assert reloaded.config.layer_types == hf_model.config.layer_types
    assert reloaded.config.rope_parameters == hf_model.config.rope_parameters
    np.testing.assert_allclose(hf_logits(reloaded, IDS), hf_logits(hf_model, IDS),
                               atol=1e-6, rtol=0)
    assert load_hf_config(out) == config


def test_packed_prefix_tree_rows_window_by_position(hf_model, ours):
    """A stem with two continuations in one row: each continuation's logits are those of
    stem + itself alone. The window counts rope positions, which restart after the stem for
    the second branch, not row slots."""
    config, params = ours
    rng = np.random.default_rng(3)
    stem, first, second = (rng.integers(0, 97, n) for n in (6, 5, 4))
    ids = np.concatenate([stem, first, second])[None]
    branch = np.repeat([0, 1, 2], [6, 5, 4])[None]
    positions = np.concatenate([np.arange(11), np.arange(6, 10)])[None]
    mask = tf.prefix_tree_mask(jnp.ones_like(jnp.asarray(branch)), jnp.asarray(branch))
    h = tf.hidden_states(params, config, jnp.asarray(ids), jnp.asarray(positions), mask=mask)
    logits = np.asarray(tf.unembed(params, config, h))[0]
    ref_first = hf_logits(hf_model, np.concatenate([stem, first])[None])[0]
    ref_second = hf_logits(hf_model, np.concatenate([stem, second])[None])[0]
    np.testing.assert_allclose(logits[:11], ref_first, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits[11:], ref_second[6:], atol=1e-4, rtol=0)


def test_cached_forward_equals_full_forward_past_the_window(ours):
    """Ragged prefill, then one token at a time to 14 tokens (> 3 windows): same logits."""
    config, params = ours
    ids = jnp.asarray(np.random.default_rng(1).integers(0, 97, (2, 14)))
    full = _forward(params, config, ids)
    cache = tf.init_cache(config, 2, 16)
    first = jnp.stack([ids[0, :6], jnp.concatenate([ids[1, :3], jnp.zeros(3, ids.dtype)])])
    logits, cache = tf.forward_cached(params, config, first, cache, jnp.zeros(2, jnp.int32))
    np.testing.assert_allclose(logits[0], full[0, :6], atol=1e-4)
    np.testing.assert_allclose(logits[1, :3], full[1, :3], atol=1e-4)
    lengths = jnp.array([6, 3])
    while int(lengths.max()) < 14:
        step = ids[jnp.arange(2), jnp.minimum(lengths, 13)][:, None]
        logits, cache = tf.forward_cached(params, config, step, cache, lengths)
        for b in range(2):
            if lengths[b] < 14:
                np.testing.assert_allclose(logits[b, 0], full[b, lengths[b]], atol=1e-4)
        lengths = jnp.minimum(lengths + 1, 14)


def test_greedy_sampling_equals_full_forward_argmax(ours):
    config, params = ours
    prompts = [[5, 6, 7], [9, 8, 7, 6, 5, 4, 3], [11]]
    out = sample(params, config, prompts, max_new_tokens=10)
    for prompt, got in zip(prompts, out.tokens):
        ids = list(prompt)
        for _ in range(10):
            ids.append(int(jnp.argmax(_forward(params, config, jnp.asarray([ids]))[0, -1])))
        assert got == ids[len(prompt):]


# Published parameter counts of the text models (the 4B-27B totals include a ~0.4B vision tower).
PUBLISHED = {"gemma3-270m": 268e6, "gemma3-1b": 1.0e9, "gemma3-4b": 3.9e9,
             "gemma3-12b": 11.8e9, "gemma3-27b": 27.0e9}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_match_published_sizes_and_load_in_transformers(name):
    config = PRESETS[name]
    assert config.num_params == pytest.approx(PUBLISHED[name], rel=0.02)
    assert config.layer_is_sliding[:6] == (True,) * 5 + (False,)
    hf_cfg = transformers.Gemma3TextConfig(**json.loads(json.dumps(config.to_hf_dict())))
    assert ModelConfig.from_hf_dict(hf_cfg.to_dict()) == config


def test_lora_merge_and_sharding_on_gemma3():
    config = ModelConfig.from_hf_dict(transformers.Gemma3TextConfig(
        **{**_TINY, **CASES["pattern_linear"]}).to_dict())
    params = tf.init_params(config, seed=0)
    assert not np.asarray(params["layers"]["mlp_post_norm"]).any()  # 1 + w starts at 1
    adapters, adapted = lora.init_lora(params, config, rank=2, alpha=4.0)
    rng = np.random.default_rng(0)
    adapters = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32),
                            adapters)
    with_lora = lora.with_adapters(params, adapters)
    rules = LogicalRules(make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    placed = tf.place_params(with_lora, rules)
    ids = jnp.asarray(IDS)
    merged = _forward(lora.merge(with_lora, adapted), adapted, ids)
    np.testing.assert_allclose(_forward(placed, adapted, ids), merged, atol=1e-4, rtol=1e-4)
    assert float(jnp.abs(merged - _forward(params, config, ids)).max()) > 1e-2
    assert math.isclose(adapted.lora_scale, 2.0)

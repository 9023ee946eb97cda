"""The negojax transformer against transformers' PyTorch implementation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hf_reference import FAMILIES, hf_logits, make_hf_model, negojax_from_hf
from negojax.models import transformer as tf


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_match_transformers(family):
    model = make_hf_model(family)
    config, params = negojax_from_hf(model)
    ids = np.random.default_rng(0).integers(0, config.vocab_size, (2, 19))
    ours = np.asarray(jax.jit(tf.forward, static_argnums=1)(params, config, jnp.asarray(ids)))
    np.testing.assert_allclose(ours, hf_logits(model, ids), atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["llama_tied", "qwen2", "qwen3"])
def test_cached_forward_equals_full_forward(family):
    """Prefill in ragged pieces then decode one token at a time: same logits as one pass."""
    config, params = negojax_from_hf(make_hf_model(family))
    rng = np.random.default_rng(1)
    ids = jnp.asarray(rng.integers(0, config.vocab_size, (2, 12)))
    full = tf.forward(params, config, ids)
    cache = tf.init_cache(config, 2, 16)
    lengths = jnp.zeros(2, jnp.int32)
    # Row 0 takes 5 tokens first, row 1 takes 3 (rest of its block is padding).
    first = jnp.stack([ids[0, :5], jnp.concatenate([ids[1, :3], jnp.zeros(2, ids.dtype)])])
    logits, cache = tf.forward_cached(params, config, first, cache, lengths)
    np.testing.assert_allclose(logits[0], full[0, :5], atol=1e-4)
    np.testing.assert_allclose(logits[1, :3], full[1, :3], atol=1e-4)
    lengths = jnp.array([5, 3])
    for _ in range(6):
        step = ids[jnp.arange(2), lengths][:, None]
        logits, cache = tf.forward_cached(params, config, step, cache, lengths)
        np.testing.assert_allclose(logits[:, 0], full[jnp.arange(2), lengths], atol=1e-4)
        lengths = lengths + 1


def test_token_logprobs_match_log_softmax():
    config, params = negojax_from_hf(make_hf_model("qwen3"))
    rng = np.random.default_rng(2)
    ids = jnp.asarray(rng.integers(0, config.vocab_size, (3, 10)))
    targets = jnp.roll(ids, -1, axis=1)
    logp, entropy = tf.token_logprobs(params, config, ids, targets, chunk=4)
    ref = jax.nn.log_softmax(tf.forward(params, config, ids), axis=-1)
    np.testing.assert_allclose(logp, jnp.take_along_axis(ref, targets[..., None], -1)[..., 0],
                               atol=1e-5)
    np.testing.assert_allclose(entropy, -(jnp.exp(ref) * ref).sum(-1), atol=1e-4)

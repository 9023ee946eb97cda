"""The sampler against plain full-sequence forwards, analytic distributions and itself."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from negojax.models import transformer as tf
from negojax.models.config import ModelConfig
from negojax.sampling import SamplingParams, Session, filtered_logits, sample, sample_tokens
from negojax.sampling import sampler as sampler_mod

CONFIG = ModelConfig("qwen3", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8, rms_norm_eps=1e-6)


@pytest.fixture(scope="module")
def params():
    return tf.init_params(CONFIG, seed=3)


_forward = jax.jit(tf.forward, static_argnums=1)


def greedy_reference(params, prompt, n):
    """Greedy decoding by re-running the full forward on the whole sequence each step."""
    ids = list(prompt)
    for _ in range(n):
        logits = _forward(params, CONFIG, jnp.asarray([ids]))
        ids.append(int(jnp.argmax(logits[0, -1])))
    return ids[len(prompt):]


def test_batched_greedy_equals_full_forward(params):
    prompts = [[1, 2, 3], [5, 6, 7, 8, 9, 10, 11], [4], [9, 9, 2, 2, 7]]
    out = sample(params, CONFIG, prompts, max_new_tokens=12)
    for p, got in zip(prompts, out.tokens):
        assert got == greedy_reference(params, p, 12)
    assert not out.finished.any()


def test_stop_ids_end_rows_independently(params):
    prompts = [[1, 2, 3], [5, 6, 7, 8]]
    free = sample(params, CONFIG, prompts, max_new_tokens=10)
    stop = free.tokens[0][3]
    out = sample(params, CONFIG, prompts, max_new_tokens=10, stop_ids=[stop])
    first = free.tokens[0].index(stop)
    assert out.tokens[0] == free.tokens[0][:first + 1] and out.finished[0]
    if stop not in free.tokens[1]:
        assert out.tokens[1] == free.tokens[1] and not out.finished[1]


def test_continuation_equals_reencoding(params):
    """Turn 1, another speaker's message, turn 2 — same as decoding turn 2 from scratch."""
    prompts = [[1, 2, 3, 4], [7, 8]]
    other = [[11, 12, 13], [14, 15, 16, 17, 18]]
    session = Session(params, CONFIG, 2, min_cache=16)
    session.extend(prompts)
    turn1 = session.generate(6)
    session.extend(other)
    turn2 = session.generate(6)
    for b in range(2):
        history = prompts[b] + turn1.tokens[b] + other[b]
        assert turn2.tokens[b] == greedy_reference(params, history, 6)
    assert session.capacity >= 4 + 6 + 5 + 6


def test_attention_window_equals_whole_cache(params):
    """Attending over a prefix of the cache that holds every token changes nothing."""
    rng = np.random.default_rng(0)
    cache = tf.init_cache(CONFIG, 3, 64)
    lengths = jnp.asarray([0, 5, 11], jnp.int32)
    prior = jnp.asarray(rng.integers(1, 64, (3, 16)), jnp.int32)
    _, cache = tf.forward_cached(params, CONFIG, prior, cache, jnp.zeros(3, jnp.int32))
    ids = jnp.asarray(rng.integers(1, 64, (3, 8)), jnp.int32)
    whole, cache_whole = tf.forward_cached(params, CONFIG, ids, cache, lengths)
    windowed, cache_windowed = tf.forward_cached(params, CONFIG, ids, cache, lengths, window=32)
    np.testing.assert_allclose(windowed, whole, atol=1e-5)
    for key in ("k", "v"):
        np.testing.assert_allclose(cache_windowed[key], cache_whole[key], atol=1e-5)


def test_a_session_pads_its_rows_to_the_batch_bucket():
    session = sampler_mod.Session(None, CONFIG, 5, min_cache=16)
    assert session.padded_batch == 6


def test_policy_logprobs_are_temperature_one(params):
    out = sample(params, CONFIG, [[1, 2, 3]], max_new_tokens=5,
                 sampling=SamplingParams(temperature=0.7, top_p=0.9), seed=1)
    ids = [1, 2, 3] + out.tokens[0]
    logp = jax.nn.log_softmax(tf.forward(params, CONFIG, jnp.asarray([ids]))[0], -1)
    ref = [float(logp[2 + t, tok]) for t, tok in enumerate(out.tokens[0])]
    np.testing.assert_allclose(out.policy_logp[0], ref, atol=1e-4)


def test_same_seed_same_samples_and_temperature_zero_is_greedy(params):
    prompts = [[1, 2, 3], [4, 5]]
    hot = SamplingParams(temperature=1.0, top_k=20, top_p=0.9)
    a = sample(params, CONFIG, prompts, max_new_tokens=8, sampling=hot, seed=7)
    b = sample(params, CONFIG, prompts, max_new_tokens=8, sampling=hot, seed=7)
    c = sample(params, CONFIG, prompts, max_new_tokens=8, sampling=hot, seed=8)
    assert a.tokens == b.tokens and a.tokens != c.tokens
    greedy = sample(params, CONFIG, prompts, max_new_tokens=8)
    assert greedy.tokens == [greedy_reference(params, p, 8) for p in prompts]


def _analytic(logits, temperature, top_k, top_p):
    """Direct NumPy construction of the target distribution (HF order: T, top-k, top-p)."""
    z = logits / temperature
    order = np.argsort(-z)
    keep = np.zeros_like(z, bool)
    keep[order[:top_k or len(z)]] = True
    p = np.exp(z - z.max()) * keep
    p /= p.sum()
    cum = 0.0
    nucleus = np.zeros_like(keep)
    for i in order:
        if keep[i] and cum < top_p:
            nucleus[i] = True
            cum += p[i]
    q = p * nucleus
    return q / q.sum()


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 4, 1.0),
                                                     (1.0, 0, 0.8), (0.5, 5, 0.9)])
def test_empirical_frequencies_match_analytic(temperature, top_k, top_p):
    """200k draws; tolerance 0.006 absolute per token (> 5 standard errors at p=0.5)."""
    logits = jnp.asarray([[2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0]])
    sp = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    n = 200_000
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    draw = jax.jit(jax.vmap(lambda k: sample_tokens(logits, k, jnp.float32(temperature),
                                                    jnp.float32(top_p), sp.mode)[0][0]))
    freq = np.bincount(np.asarray(draw(keys)), minlength=8) / n
    expected = _analytic(np.asarray(logits[0], np.float64), temperature, top_k, top_p)
    np.testing.assert_allclose(freq, expected, atol=0.006)
    # The sampling log-probs reported are those of the same distribution.
    masked = filtered_logits(logits, jnp.float32(temperature), jnp.float32(top_p), sp.mode)
    np.testing.assert_allclose(np.exp(jax.nn.log_softmax(masked[0])), expected, atol=1e-6)


def test_bounded_compilations(params):
    """Ragged prompts, batch sizes and token budgets inside one bucket reuse one program."""
    sample(params, CONFIG, [[1, 2], [3, 4, 5], [6]], max_new_tokens=5)
    before = dict(sampler_mod.TRACE_COUNTS)
    for prompts in ([[1], [2, 3, 4, 5], [7, 7]], [[6, 7, 8], [9], [1, 1], [2, 3, 4]],
                    [[2] * 7, [3] * 4, [4]]):
        sample(params, CONFIG, prompts, max_new_tokens=5)
        sample(params, CONFIG, prompts, max_new_tokens=8)
    assert dict(sampler_mod.TRACE_COUNTS) == before


def test_bad_arguments_are_one_line_errors(params):
    with pytest.raises(ValueError, match="top_p=1.5"):
        SamplingParams(top_p=1.5)
    with pytest.raises(ValueError, match="at least one token"):
        sample(params, CONFIG, [[]], max_new_tokens=3)

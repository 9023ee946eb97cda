"""PrefixCache against plain prefill: the same next-token logits and greedy continuations, the
shared openings of earlier calls reused rather than computed, least recently used rows evicted."""
import numpy as np
import pytest

from negojax.models import transformer as tf
from negojax.models.config import ModelConfig
from negojax.sampling import prefill
from negojax.sampling.prefix_cache import PrefixCache

CONFIG = ModelConfig("llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8, rms_norm_eps=1e-6)


@pytest.fixture(scope="module")
def params():
    return tf.init_params(CONFIG, seed=5)


def same_as_plain(params, session, prompts):
    plain = prefill(params, CONFIG, prompts)
    got = np.asarray(session.logits)[:len(prompts)]
    np.testing.assert_allclose(got, np.asarray(plain.logits)[:len(prompts)], atol=1e-5)
    assert session.generate(6).tokens == plain.generate(6).tokens


def opening(seed, n):
    return np.random.default_rng(seed).integers(1, 64, n).tolist()


def test_later_calls_reuse_the_openings_of_earlier_ones(params):
    stem = opening(0, 40)
    cache = PrefixCache(params, CONFIG, 4, min_shared=16)
    first = [stem + [1, 2, 3, 4, 5]]
    same_as_plain(params, cache.prefill(first), first)
    assert cache.tokens_reused == 0 and cache.tokens_prefilled == 45
    second = [stem + [6] * 7, stem + [7, 8, 9]]  # one call, both opening like the first
    same_as_plain(params, cache.prefill(second), second)
    assert cache.tokens_reused == 80 and cache.tokens_prefilled == 45 + 10
    longer = [second[0] + [9, 9, 9]]  # a stored prompt that opens a new one serves it whole
    same_as_plain(params, cache.prefill(longer), longer)
    assert cache.tokens_reused == 80 + 47 and cache.tokens_prefilled == 55 + 3
    repeat = [list(first[0])]  # a repeat computes nothing: its row holds its logits
    same_as_plain(params, cache.prefill(repeat), repeat)
    assert cache.tokens_reused == 80 + 47 + 45 and cache.tokens_prefilled == 58


def test_a_call_mixing_new_and_known_openings(params):
    known, new = opening(1, 36), opening(2, 33)
    cache = PrefixCache(params, CONFIG, 4, min_shared=16)
    cache.prefill([known + [1, 2, 3, 4]])
    mixed = [known + [5, 6, 7, 8, 9, 10], new + [1, 2], new + [3, 4, 5, 6, 7], [3, 1, 4]]
    same_as_plain(params, cache.prefill(mixed), mixed)
    # The new prompts are prefilled in a call of their own (which computes their common
    # opening once), then copied like the known one.
    assert cache.tokens_reused == 36 and cache.tokens_prefilled == 40 + 6 + 35 + 38 + 3


def test_least_recently_used_rows_make_room(params):
    stems = [opening(3 + k, 32) for k in range(3)]
    cache = PrefixCache(params, CONFIG, 2, min_shared=16)
    for stem in stems:  # the third evicts the first
        cache.prefill([stem + [1, 2, 3]])
    later = [stems[1] + [4, 5, 6, 7], stems[0] + [4, 5, 6, 7]]
    same_as_plain(params, cache.prefill(later), later)
    assert cache.tokens_reused == 32

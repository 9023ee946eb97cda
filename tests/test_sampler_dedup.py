"""sample() prefills a stem shared by several prompts once and copies its KV cache rows; the
result is what prefilling every row would give, and copied rows still sample independently."""
import numpy as np

from negojax.models import transformer as tf
from negojax.models.config import ModelConfig
from negojax.sampling import SamplingParams, sample
from negojax.sampling import sampler as sampler_mod
from negojax.sampling.sampler import shared_stems

CONFIG = ModelConfig("llama", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8, rms_norm_eps=1e-6)


def test_identical_prompts_prefill_once_and_match_separate_prefills(monkeypatch):
    params = tf.init_params(CONFIG, seed=5)
    a, b = [1, 2, 3, 4, 5], [7, 8]
    prefilled_rows = []
    real_prefill = sampler_mod._prefill

    def counting_prefill(params, config, ids, num_new, *args, **kwargs):
        prefilled_rows.append(int(np.sum(np.asarray(num_new) > 0)))
        return real_prefill(params, config, ids, num_new, *args, **kwargs)

    monkeypatch.setattr(sampler_mod, "_prefill", counting_prefill)
    out = sample(params, CONFIG, [a, b, a, a, b], max_new_tokens=10)
    assert prefilled_rows == [2]
    separate = [sample(params, CONFIG, [p], max_new_tokens=10).tokens[0] for p in (a, b)]
    assert out.tokens == [separate[0], separate[1], separate[0], separate[0], separate[1]]

    drawn = sample(params, CONFIG, [a] * 8, max_new_tokens=10,
                   sampling=SamplingParams(temperature=1.0), seed=0)
    assert len({tuple(t) for t in drawn.tokens}) > 1
    assert all(len(lp) == len(t) for lp, t in zip(drawn.policy_logp, drawn.tokens))


def test_shared_stems_are_prefilled_once(monkeypatch):
    params = tf.init_params(CONFIG, seed=5)
    stem = list(range(1, 41))
    prompts = [stem + [50, 51], [9, 9, 9], stem + [52], stem, stem + [50, 51, 53]]
    groups, stems = shared_stems(prompts)
    assert sorted(map(sorted, groups)) == [[0, 2, 3, 4], [1]]
    assert sorted(stems) == [3, 40]
    prefilled = []
    real_prefill = sampler_mod._prefill

    def counting_prefill(params, config, ids, num_new, *args, **kwargs):
        prefilled.append(int(np.sum(np.asarray(num_new))))
        return real_prefill(params, config, ids, num_new, *args, **kwargs)

    monkeypatch.setattr(sampler_mod, "_prefill", counting_prefill)
    out = sample(params, CONFIG, prompts, max_new_tokens=8)
    assert prefilled == [40 + 3, 2 + 1 + 3]  # the stems, then each row's remainder
    monkeypatch.setattr(sampler_mod, "_prefill", real_prefill)
    for p, got in zip(prompts, out.tokens):
        assert got == sample(params, CONFIG, [p], max_new_tokens=8).tokens[0]


def test_prompts_without_a_shared_stem_keep_their_order():
    params = tf.init_params(CONFIG, seed=5)
    prompts = [[9, 8, 7], [1, 2], [5]]
    out = sample(params, CONFIG, prompts, max_new_tokens=6)
    for p, got in zip(prompts, out.tokens):
        assert got == sample(params, CONFIG, [p], max_new_tokens=6).tokens[0]

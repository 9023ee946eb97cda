"""sample() prefills each opening shared by several prompts once, level by level of their prefix
tree, and copies its KV cache rows; the result is what prefilling every row would give, and
copied rows still sample independently."""
import numpy as np

from negojax.models import transformer as tf
from negojax.models.config import ModelConfig
from negojax.sampling import SamplingParams, sample
from negojax.sampling import sampler as sampler_mod
from negojax.sampling.prefix_tree import prefix_tree

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


def test_shared_openings_are_prefilled_once_per_tree_level(monkeypatch):
    """A 40-token opening shared by four prompts, two of which go on to share 40 more: each
    shared stretch is prefilled once, then each row's remainder; rows match separate prefills."""
    params = tf.init_params(CONFIG, seed=5)
    stem, deeper = list(range(1, 41)), list(range(100, 140))
    prompts = [stem + deeper + [50, 51], [9, 9, 9], stem + [52], stem, stem + deeper + [53]]
    roots = prefix_tree(prompts)
    assert sorted((r.start, r.end, sorted(r.rows())) for r in roots) == [
        (0, 3, [1]), (0, 40, [0, 2, 3, 4])]
    shared = next(r for r in roots if r.row is None)
    assert sorted((c.start, c.end, c.rows()) for c in shared.children) == [
        (40, 40, [3]), (40, 41, [2]), (40, 80, [0, 4])]
    prefilled = []
    real_prefill = sampler_mod._prefill

    def counting_prefill(params, config, ids, num_new, *args, **kwargs):
        prefilled.append(int(np.sum(np.asarray(num_new))))
        return real_prefill(params, config, ids, num_new, *args, **kwargs)

    monkeypatch.setattr(sampler_mod, "_prefill", counting_prefill)
    out = sample(params, CONFIG, prompts, max_new_tokens=8)
    # The roots (40 + 3), the next level (1 + 40), then the rows under `deeper` (2 + 1).
    assert prefilled == [40 + 3, 1 + 40, 2 + 1]
    monkeypatch.setattr(sampler_mod, "_prefill", real_prefill)
    for p, got in zip(prompts, out.tokens):
        assert got == sample(params, CONFIG, [p], max_new_tokens=8).tokens[0]


def test_prompts_without_a_shared_stem_keep_their_order():
    params = tf.init_params(CONFIG, seed=5)
    prompts = [[9, 8, 7], [1, 2], [5]]
    out = sample(params, CONFIG, prompts, max_new_tokens=6)
    for p, got in zip(prompts, out.tokens):
        assert got == sample(params, CONFIG, [p], max_new_tokens=6).tokens[0]

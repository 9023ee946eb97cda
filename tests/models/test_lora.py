"""LoRA: adapters start as a no-op, only they train, merge folds W + (alpha/r) A B, int8 base."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from negojax.models import lora, quantization
from negojax.models.transformer import forward as eager_forward, init_params
from negojax.parallel.mesh import make_mesh
from negojax.parallel.sharding import LogicalRules
from negojax.rl.train_step import combine, init_train_state, make_train_step, place_batch
from train_step_case import CONFIG, HPARAMS, make_batch

RANK, ALPHA = 4, 8.0
IDS = jnp.asarray(make_batch(0).tokens[:2])
forward = jax.jit(eager_forward, static_argnums=1)


@pytest.fixture(scope="module")
def base():
    return init_params(CONFIG, seed=0)


def test_fresh_adapters_leave_the_model_unchanged(base):
    adapters, config = lora.init_lora(base, CONFIG, RANK, ALPHA)
    assert config.lora_scale == ALPHA / RANK
    assert adapters["wo"]["a"].shape == (CONFIG.num_layers, CONFIG.num_heads, CONFIG.head_dim, RANK)
    assert adapters["wo"]["b"].shape == (CONFIG.num_layers, RANK, CONFIG.hidden_size)
    # B starts at zero, so every adapter's delta is exactly zero ...
    for name, ab in adapters.items():
        np.testing.assert_array_equal(lora.lora_delta(name, ab["a"], ab["b"], config.lora_scale), 0)
    # ... and the forward with adapters differs from the plain one only by the rounding of a
    # differently fused XLA program (exactly equal on some CPUs, 2e-7 apart on others).
    np.testing.assert_allclose(forward(lora.with_adapters(base, adapters), config, IDS),
                               forward(base, CONFIG, IDS), rtol=0, atol=1e-6)


def test_merge_equals_w_plus_scaled_ab(base):
    adapters, config = lora.init_lora(base, CONFIG, RANK, ALPHA, targets=("wq", "wo", "w_down"))
    rng = np.random.default_rng(0)
    adapters = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), adapters)
    merged = lora.merge(lora.with_adapters(base, adapters), config)
    assert "lora" not in merged["layers"]
    scale = ALPHA / RANK
    for name in ("wq", "wo", "w_down"):
        a, b = np.asarray(adapters[name]["a"], np.float64), np.asarray(adapters[name]["b"], np.float64)
        flat_a = a.reshape(a.shape[0], -1, RANK)
        flat_b = b.reshape(b.shape[0], RANK, -1)
        expected = np.asarray(base["layers"][name], np.float64) + scale * np.matmul(
            flat_a, flat_b).reshape(base["layers"][name].shape)
        np.testing.assert_allclose(merged["layers"][name], expected, rtol=1e-5, atol=1e-5)
    for name in ("wk", "wv", "w_gate", "w_up"):
        np.testing.assert_array_equal(merged["layers"][name], base["layers"][name])
    np.testing.assert_allclose(forward(merged, config, IDS),
                               forward(lora.with_adapters(base, adapters), config, IDS),
                               rtol=1e-4, atol=1e-4)


def test_int8_base_dequantises_within_half_a_step(base):
    w = base["layers"]["wo"]
    q = quantization.quantize(w, "int8", 2)
    assert q["int8"].dtype == jnp.int8 and q["scale"].shape == (CONFIG.num_layers, 1, 1,
                                                                  CONFIG.hidden_size)
    assert np.all(np.abs(quantization.dequantize(q, 2, layers=True) - w) <= q["scale"] / 2 + 1e-7)
    frozen = lora.freeze_base(base, "int8")
    logits, ref = forward(frozen, CONFIG, IDS), forward(base, CONFIG, IDS)
    assert float(jnp.max(jnp.abs(logits - ref))) < 0.05 * float(jnp.max(jnp.abs(ref)))
    bf16 = lora.freeze_base(base, "bfloat16")
    assert bf16["layers"]["wq"].dtype == jnp.bfloat16


def test_only_adapters_train_over_an_int8_base_in_bf16(base):
    rules = LogicalRules(make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    adapters, config = lora.init_lora(base, CONFIG, RANK, ALPHA)
    config = config.replace(dtype=jnp.bfloat16)  # bf16 compute over f32 master adapters
    frozen = lora.freeze_base(base, "int8")
    hp = dataclasses.replace(HPARAMS, learning_rate=1e-2)
    state = init_train_state({"layers": {"lora": adapters}}, frozen, hp, rules)
    # The optimizer holds moments for the adapters only.
    mu = state["opt_state"][1][0].mu
    assert jax.tree.structure(mu) == jax.tree.structure(state["trainable"])
    before = jax.tree.map(np.asarray, combine(state["trainable"], state["frozen"]))
    step = make_train_step(hp, config, rules, state)
    # B starts at zero, so A first moves on the second step.
    for i in range(2):
        state, metrics = step(state, place_batch(make_batch(i), rules))
    assert int(state["step"]) == 2 and np.isfinite(float(metrics["loss"]))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state["trainable"]))
    after = jax.tree.map(np.asarray, combine(state["trainable"], state["frozen"]))
    for path, old in jax.tree_util.tree_flatten_with_path(before)[0]:
        new = after
        for key in path:
            new = new[key.key]
        changed = not np.array_equal(old, new)
        is_adapter = path[1].key == "lora" if len(path) > 1 else False
        assert changed == is_adapter, jax.tree_util.keystr(path)


def test_unknown_target_names_the_config_key(base):
    with pytest.raises(ValueError, match="lora.targets"):
        lora.init_lora(base, CONFIG, RANK, ALPHA, targets=("wqkv",))

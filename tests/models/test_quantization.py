"""Quantised frozen bases: int4 and NF4 against a NumPy reference of each format, their error
bounds and bytes, and LoRA over a 4-bit base (forward, merge, a train step that learns), with
dequantisation one layer at a time inside the layer scan."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from negojax.models import lora, quantization
from negojax.models.transformer import PROJECTION_INPUT_DIMS, forward as eager_forward, init_params
from negojax.parallel.mesh import make_mesh
from negojax.parallel.sharding import LogicalRules
from negojax.rl.train_step import (init_train_state, make_train_step, place_batch,
                                   train_state_shapes)
from train_step_case import CONFIG, HPARAMS, make_batch

forward = jax.jit(eager_forward, static_argnums=1)
IDS = jnp.asarray(make_batch(0).tokens[:2])
FOUR_BIT = ("int4", "nf4")


# ------------------------------------------------------------------ the NumPy reference


def reference_quantize(w: np.ndarray, fmt: str, n_in: int):
    """One layer [*in, *out] as the format spells it: blocks of 64 (or the whole dim) along the
    last input dim, one absmax each, codes j and j + bs/2 of a block sharing byte j."""
    w = np.asarray(w, np.float32)
    n = w.shape[n_in - 1]
    bs = 64 if n % 64 == 0 else n
    blocks = w.reshape(*w.shape[:n_in - 1], n // bs, bs, *w.shape[n_in:])
    absmax = np.abs(blocks).max(axis=n_in, keepdims=True)
    absmax[absmax == 0] = 1.0
    if fmt == "int4":
        scale = absmax * np.float32(1 / 7)
        codes = (np.clip(np.round(blocks / scale), -7, 7) + 8).astype(np.uint8)
    else:
        scale = absmax
        table = quantization.NF4.astype(np.float64)
        # Nearest table entry, ties to the lower one.
        codes = np.searchsorted((table[1:] + table[:-1]) / 2, (blocks / scale).astype(np.float64),
                                side="left").astype(np.uint8)
    low, high = np.split(codes, 2, axis=n_in)
    return low | (high << 4), scale


def reference_dequantize(packed, scale, fmt: str, n_in: int):
    codes = np.concatenate([packed & 15, packed >> 4], axis=n_in)
    values = codes.astype(np.float32) - 8 if fmt == "int4" else quantization.NF4[codes]
    dense = values * scale
    return dense.reshape(*packed.shape[:n_in - 1], -1, *packed.shape[n_in + 1:])


# Shapes of one layer: [D, F] (2 blocks of 64), wo's [H, Dh, D] (Dh = 16: one block per head),
# a dim of 40 (one block of 40).
SHAPES = [((128, 48), 1), ((4, 16, 32), 2), ((40, 8), 1)]


@pytest.mark.parametrize("fmt", FOUR_BIT)
@pytest.mark.parametrize("shape,n_in", SHAPES)
def test_four_bit_formats_equal_the_numpy_reference(fmt, shape, n_in):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, *shape)).astype(np.float32)
    w[0, ..., 0] = 0.0  # an all-zero block column keeps a finite scale
    q = quantization.quantize(jnp.asarray(w), fmt, n_in)
    for layer in range(3):
        packed, scale = reference_quantize(w[layer], fmt, n_in)
        np.testing.assert_array_equal(np.asarray(q[fmt][layer]), packed)
        np.testing.assert_array_equal(np.asarray(q["scale"][layer]), scale)
        np.testing.assert_array_equal(
            np.asarray(quantization.dequantize(jax.tree.map(lambda x: x[layer], q), n_in)),
            reference_dequantize(packed, scale, fmt, n_in))
    assert q[fmt].dtype == jnp.uint8
    assert quantization.dense_shape(q, n_in) == w.shape
    assert quantization.dequantize(q, n_in, layers=True).shape == w.shape


def test_nf4_codes_are_the_nearest_table_entry_and_errors_are_bounded():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 256, 64)).astype(np.float32)
    blocks = np.abs(w.reshape(2, 4, 64, 64)).max(axis=2, keepdims=True)  # absmax per block
    absmax = np.broadcast_to(blocks, (2, 4, 64, 64)).reshape(w.shape)
    for fmt, step in (("nf4", np.max(np.diff(quantization.NF4)) / 2), ("int4", 1 / 14)):
        q = quantization.quantize(jnp.asarray(w), fmt, 1)
        error = np.abs(np.asarray(quantization.dequantize(q, 1, layers=True)) - w)
        assert np.all(error <= absmax * step * (1 + 1e-6)), fmt
        # Each block's absmax is represented exactly (codes +-1 of the table, +-7 of int4).
        np.testing.assert_allclose(error[absmax == np.abs(w)], 0, atol=1e-6)
    # NF4 spends its codes where normal weights are: a smaller mean error than int4's grid.
    errors = {fmt: np.abs(np.asarray(quantization.dequantize(
        quantization.quantize(jnp.asarray(w), fmt, 1), 1, layers=True)) - w).mean()
        for fmt in FOUR_BIT}
    assert errors["nf4"] < errors["int4"]


def test_four_bit_bases_take_half_the_bytes_of_int8():
    params = init_params(CONFIG, seed=0)

    def nbytes(storage):
        frozen = lora.freeze_base(params, storage)
        return sum(x.nbytes for name in lora.DEFAULT_TARGETS
                   for x in jax.tree.leaves(frozen["layers"][name]))
    codes = {s: sum(lora.freeze_base(params, s)["layers"][n][s].nbytes
                    for n in lora.DEFAULT_TARGETS) for s in quantization.FORMATS}
    assert codes["nf4"] == codes["int4"] == codes["int8"] // 2
    assert nbytes("nf4") < 0.6 * nbytes("int8") < 0.2 * nbytes("float32")


def test_odd_input_dims_are_refused_in_one_line():
    with pytest.raises(ValueError, match="lora.base_dtype=int8"):
        quantization.quantize(jnp.ones((1, 33, 8)), "nf4", 1)


# ------------------------------------------------------------------ LoRA over a 4-bit base


@pytest.fixture(scope="module")
def base():
    return init_params(CONFIG, seed=0)


def dequantised(frozen):
    """The dense f32 params a quantised base stands for."""
    layers = {name: quantization.dequantize(w, PROJECTION_INPUT_DIMS[name], layers=True)
              if quantization.format_of(w) else w for name, w in frozen["layers"].items()}
    return {**frozen, "layers": layers}


@pytest.mark.parametrize("fmt", FOUR_BIT)
def test_a_four_bit_base_computes_the_dequantised_model(base, fmt):
    adapters, config = lora.init_lora(base, CONFIG, 4, 8.0)
    rng = np.random.default_rng(0)
    adapters = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * 0.1, jnp.float32),
                            adapters)
    frozen = lora.freeze_base(base, fmt)
    assert all(quantization.format_of(frozen["layers"][n]) == fmt for n in lora.DEFAULT_TARGETS)
    quantised = forward(lora.with_adapters(frozen, adapters), config, IDS)
    reference = forward(lora.with_adapters(dequantised(frozen), adapters), config, IDS)
    np.testing.assert_allclose(quantised, reference, rtol=1e-5, atol=1e-5)
    merged = lora.merge(lora.with_adapters(frozen, adapters), config)
    np.testing.assert_allclose(forward(merged, config, IDS), quantised, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("adapter_dtype", [jnp.float32, jnp.bfloat16])
def test_lora_over_an_nf4_base_learns_and_leaves_the_base_alone(base, adapter_dtype):
    rules = LogicalRules(make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    config = CONFIG.replace(param_dtype=adapter_dtype, dtype=jnp.bfloat16)
    adapters, config = lora.init_lora(base, config, 4, 8.0)
    frozen = lora.freeze_base(base, "nf4")
    hp = dataclasses.replace(HPARAMS, learning_rate=3e-2, num_microbatches=1)
    state = init_train_state({"layers": {"lora": adapters}}, frozen, hp, rules)
    before = jax.tree.map(np.asarray, state["frozen"])
    step = make_train_step(hp, config, rules, state)
    batch = place_batch(make_batch(0), rules)
    losses = []
    for _ in range(6):  # the same batch: the loss must fall
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] - 1e-3, losses
    assert {x.dtype for x in jax.tree.leaves(state["trainable"])} == {jnp.dtype(adapter_dtype)}
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state["frozen"]), before)


def test_the_train_step_dequantises_one_layer_at_a_time():
    """The compiled step's temporaries stay far below one dequantised base: the layer scan
    dequantises each layer's slice and the backward pass dequantises it again rather than
    saving every layer's dense copy (which took 3x the dense bf16 base before). What remains
    is about one layer's dense weights (float32 on CPU, which upcasts bf16 dots) and the
    activations."""
    config = CONFIG.replace(hidden_size=256, intermediate_size=1024, num_layers=16, head_dim=64,
                            dtype=jnp.bfloat16, lora_scale=2.0)
    params = jax.eval_shape(lambda: init_params(config))
    adapters = jax.eval_shape(lambda p: lora.init_lora(p, config, 4, 8.0)[0], params)
    dense_bf16 = 2 * sum(np.prod(params["layers"][n].shape) for n in lora.DEFAULT_TARGETS)
    rules = LogicalRules(make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    hp = dataclasses.replace(HPARAMS, num_microbatches=1)
    batch = make_batch(0, rows=1, length=8)
    for storage in ("nf4", "float32"):
        frozen = jax.eval_shape(lambda p: lora.freeze_base(p, storage), params)
        state = train_state_shapes({"layers": {"lora": adapters}}, frozen, hp, rules)
        memory = make_train_step(hp, config, rules, state).lower(
            state, jax.eval_shape(lambda: batch)).compile().memory_analysis()
        assert memory.temp_size_in_bytes < 0.35 * dense_bf16, (storage, memory)

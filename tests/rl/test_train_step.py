"""The GRPO train step: microbatching, inner updates, the non-finite guard, the KL path, sharding."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import negojax.rl.train_step as train_step
from negojax.models.transformer import init_params
from negojax.parallel.mesh import make_mesh
from negojax.parallel.sharding import LogicalRules
from negojax.rl.losses import AGGREGATIONS, kl_penalty
from negojax.rl.batch import TrainBatch, loss_positions
from negojax.rl.train_step import init_train_state, make_train_step, place_batch, sequence_logprobs
from train_step_case import B, CONFIG, HPARAMS, T, make_batch, max_abs_diff

HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers")
BASE = dataclasses.replace(HPARAMS, num_microbatches=1)


@pytest.fixture(scope="module")
def rules():
    return LogicalRules(make_mesh(1, 1, 1, devices=jax.devices()[:1]))


@pytest.fixture(scope="module")
def steps(rules):
    """One compiled step per hyper-parameter set, shared by the tests (full fine-tuning layout)."""
    cache = {}

    def get(hp):
        if hp not in cache:
            cache[hp] = make_train_step(hp, CONFIG, rules, fresh(hp, rules))
        return cache[hp]
    return get


def fresh(hp, rules, **kw):
    return init_train_state(init_params(CONFIG, seed=0), {}, hp, rules, **kw)


def host(tree):
    return jax.tree.map(np.asarray, tree)


def assert_same_update(steps, rules, runs, names=("loss", "grad_norm", "entropy",
                                                   "clip_fraction", "tokens"), params_tol=1e-5):
    """Both (hparams, batch) runs, each from the same fresh state, give one update."""
    results = []
    for hp, batch in runs:
        state, metrics = steps(hp)(fresh(hp, rules), place_batch(batch, rules))
        results.append((host(metrics), host(state["trainable"])))
    (m1, p1), (m2, p2) = results
    for name in names:
        np.testing.assert_allclose(m1[name], m2[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert max_abs_diff(p1, p2) < params_tol


def test_microbatches_match_one_big_batch(rules, steps):
    batch = make_batch(0)
    assert_same_update(steps, rules, [(dataclasses.replace(BASE, num_microbatches=k), batch)
                                      for k in (1, 2)])


def test_remat_gives_the_same_update_in_less_memory(rules, steps):
    """rl.remat recomputes each layer in the backward pass: the update is the plain one, and
    the compiled step keeps less (every layer's MLP activations no longer stay alive)."""
    remat = dataclasses.replace(BASE, remat=True)
    batch = make_batch(0).with_loss_positions(T)
    assert_same_update(steps, rules, [(BASE, batch), (remat, batch)])
    wide = CONFIG.replace(intermediate_size=1024, num_layers=4)
    temps = []
    for hp in (BASE, remat):
        state = train_step.train_state_shapes(init_params(wide, seed=0), {}, hp, rules)
        compiled = make_train_step(hp, wide, rules, state).lower(
            state, jax.eval_shape(lambda: make_batch(0, length=64))).compile()
        temps.append(compiled.memory_analysis().temp_size_in_bytes)
    assert temps[1] < 0.7 * temps[0], temps


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_loss_positions_match_every_position(rules, steps, beta):
    """Unembedding only the loss positions gives the same update as unembedding all of them."""
    hp = dataclasses.replace(HPARAMS, beta=beta)  # 2 microbatches
    batch = make_batch(0)
    batch.loss_mask[:, -3:] = 0.0  # rows whose loss does not reach the end
    positioned = batch.with_loss_positions(12)
    assert_same_update(steps, rules, [(hp, batch), (hp, positioned)],
                       names=("loss", "grad_norm", "entropy", "clip_fraction", "tokens", "kl"),
                       params_tol=1e-6)


@pytest.mark.parametrize("aggregation,beta", [("token_mean", 0.0), ("seq_mean_token_mean", 0.1)])
def test_packed_rows_match_one_sequence_per_row(rules, steps, aggregation, beta):
    """Sequences packed into prefix trees (shared stems once, several per row) give the update
    of one padded sequence per row."""
    from negojax.rl.packing import pack_sequences
    from test_packing import grouped_sequences

    hp = dataclasses.replace(HPARAMS, aggregation=aggregation, beta=beta)  # 2 microbatches
    seqs = grouped_sequences(seed=2, stem=20)[:8]
    adv = np.random.default_rng(0).normal(size=len(seqs)).astype(np.float32)
    longest = max(len(s.tokens) for s in seqs)
    rows = {key: np.zeros((8, longest), dtype) for key, dtype in
            (("tokens", np.int32), ("loss_mask", np.float32), ("old_logp", np.float32))}
    for b, s in enumerate(seqs):
        for key, value in (("tokens", s.tokens), ("loss_mask", s.loss_mask),
                           ("old_logp", s.old_logp)):
            rows[key][b, :len(s.tokens)] = value
    plain = TrainBatch(**rows, advantages=adv)
    packed = pack_sequences(seqs, adv, (2 * longest,), parity_length=10**6)
    assert len(packed.tokens) <= 4
    packed = packed.padded(4).with_loss_positions()
    assert_same_update(steps, rules, [(hp, plain), (hp, packed)],
                       names=("loss", "grad_norm", "entropy", "clip_fraction", "tokens", "kl"))


def test_loss_positions_list_each_masked_position():
    mask = np.zeros((3, 10), np.float32)
    mask[0, 2:5] = 1
    mask[2, [1, 7, 9]] = 1
    np.testing.assert_array_equal(loss_positions(mask, 4),
                                  [[2, 3, 4, 0], [0, 0, 0, 0], [1, 7, 9, 0]])
    assert loss_positions(np.ones((2, 200), np.float32)).shape == (2, 200)  # capped at T
    assert loss_positions(mask).shape == (3, 10)
    with pytest.raises(ValueError, match="3 loss tokens but width=2") as err:
        loss_positions(mask, 2)
    assert "\n" not in str(err.value)


def test_padding_microbatches_change_nothing(rules, steps):
    """Rows with no loss token, gathered into whole microbatches (skipped by the step), give the
    update of the batch without them."""
    batch = make_batch(0, rows=12)
    # Microbatch i holds rows i, i + 4, ...: the 12 rows fill microbatches 0-2 (rows 0-11 in
    # that order) and microbatch 3 (rows 3, 7, 11, 15) is all padding.
    padded = batch.padded(16, microbatches=4)
    assert not padded.loss_mask[3::4].any() and padded.loss_mask[0::4].any()
    assert_same_update(steps, rules, [(dataclasses.replace(BASE, num_microbatches=k), b)
                                      for b, k in ((batch, 3), (padded, 4))])


def test_inner_updates_equal_repeated_steps(rules, steps):
    batch = make_batch(0)
    hp2 = dataclasses.replace(BASE, num_microbatches=2, num_inner_updates=2)
    once, _ = steps(hp2)(fresh(hp2, rules), place_batch(batch, rules))
    hp1 = dataclasses.replace(hp2, num_inner_updates=1)
    state = fresh(hp1, rules)
    for _ in range(2):
        state, metrics = steps(hp1)(state, place_batch(batch, rules))
    assert int(once["step"]) == int(state["step"]) == 2
    assert max_abs_diff(host(once["trainable"]), host(state["trainable"])) < 1e-6
    # The second pass is off-policy: the ratio has moved away from 1.
    assert abs(float(metrics["ratio_mean"]) - 1.0) > 1e-4


def test_nan_advantage_skips_the_update(rules, steps):
    batch = make_batch(0)
    batch.advantages[3] = np.nan
    state = fresh(BASE, rules)
    before = host({k: state[k] for k in ("trainable", "opt_state", "step")})
    state, metrics = steps(BASE)(state, place_batch(batch, rules))
    assert not np.isfinite(float(metrics["loss"]))
    assert int(metrics["skipped_updates"]) == int(state["skipped_updates"]) == 1
    after = host({k: state[k] for k in ("trainable", "opt_state", "step")})
    assert max_abs_diff(before, after) == 0.0
    # A clean batch afterwards is applied.
    state, metrics = steps(BASE)(state, place_batch(make_batch(1), rules))
    assert int(state["step"]) == 1 and int(metrics["skipped_updates"]) == 1


def forwards_per_loss(monkeypatch, hp, rules):
    """Trace the step; count model forwards built per evaluation of the policy loss."""
    calls = {"forward": 0, "loss": 0}

    def spy(name, real):
        def wrapped(*args, **kw):
            calls[name] += 1
            return real(*args, **kw)
        return wrapped

    monkeypatch.setattr(train_step, "hidden_states", spy("forward", train_step.hidden_states))
    monkeypatch.setattr(train_step, "policy_loss_terms",
                        spy("loss", train_step.policy_loss_terms))
    state = fresh(hp, rules)
    make_train_step(hp, CONFIG, rules, state).lower(state, place_batch(make_batch(0), rules))
    assert calls["loss"] > 0
    return calls["forward"] / calls["loss"]


def test_beta_zero_builds_no_reference_forward(monkeypatch, rules):
    assert forwards_per_loss(monkeypatch, BASE, rules) == 1
    assert forwards_per_loss(monkeypatch, dataclasses.replace(BASE, beta=0.1), rules) == 2


def test_kl_term_adds_beta_times_kl(rules, steps):
    batch = make_batch(0)
    ref = init_params(CONFIG, seed=1)
    hp = dataclasses.replace(BASE, beta=0.1, kl_estimator="k3")
    state = fresh(hp, rules, ref=ref)
    _, with_kl = steps(hp)(state, place_batch(batch, rules))
    _, without = steps(BASE)(fresh(BASE, rules), place_batch(batch, rules))

    logp, _ = sequence_logprobs(init_params(CONFIG, seed=0), CONFIG, jnp.asarray(batch.tokens),
                                rules, 16)
    ref_logp, _ = sequence_logprobs(ref, CONFIG, jnp.asarray(batch.tokens), rules, 16)
    mask = batch.loss_mask
    expected_kl = float((kl_penalty(logp, ref_logp, "k3") * mask).sum() / mask.sum())
    assert expected_kl > 0.01
    np.testing.assert_allclose(float(with_kl["kl"]), expected_kl, rtol=1e-4)
    np.testing.assert_allclose(float(with_kl["loss"]) - float(without["loss"]),
                               0.1 * expected_kl, rtol=1e-4, atol=1e-6)


def test_batch_errors_name_the_fix(rules, steps):
    batch = make_batch(0, rows=6)
    hp = dataclasses.replace(BASE, num_microbatches=4)
    with pytest.raises(ValueError, match="num_microbatches"):
        make_train_step(hp, CONFIG, rules, fresh(hp, rules)).lower(
            fresh(hp, rules), place_batch(batch, rules))
    step = steps(BASE)
    half_packed = make_batch(0).replace(segment_ids=np.ones((B, T), np.int32))
    with pytest.raises(ValueError, match="not all of .*pack_sequences") as err:
        step.lower(fresh(BASE, rules), place_batch(half_packed, rules))
    assert "\n" not in str(err.value)
    packed = half_packed.replace(branch_ids=np.zeros((B, T), np.int32),
                                 position_ids=np.tile(np.arange(T, dtype=np.int32), (B, 1)))
    with pytest.raises(ValueError, match=r"advantages is \(16,\), need \(16, 16\) \(per token"):
        step.lower(fresh(BASE, rules), place_batch(packed, rules))


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded") / "result.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, os.path.join(HELPERS, "train_step_worker.py"), "sharded",
                    str(out)], env=env, cwd=HELPERS, check=True, timeout=600)
    return json.loads(out.read_text())


def test_mesh_2x2x2_matches_one_device(eight_devices):
    r = eight_devices
    np.testing.assert_allclose(r["losses_8"], r["losses_1"], rtol=1e-5, atol=1e-6)
    assert r["param_diff"] < 1e-5
    # The parameters really were sharded (FSDP on embed, tensor on heads).
    assert r["wq_spec"] == "P(None, 'fsdp', 'tensor', None)"


def test_vocab_parallel_log_softmax_matches_plain(eight_devices):
    r = eight_devices
    assert r["vocab_logp_diff"] < 1e-5
    assert r["vocab_entropy_diff"] < 1e-4
    assert r["vocab_grad_diff"] < 1e-5


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_every_aggregation_the_config_accepts_runs_a_step(rules, aggregation):
    """Each rl.loss_aggregation that validation accepts builds hyper-parameters that train
    (Dr. GRPO's needs a constant normaliser, which the rollout's token budget gives)."""
    from negojax.run.build import train_hparams
    from negojax.run.config import validate_static
    from shipped_configs import shipped_config
    config = shipped_config("tiny_test")
    with config.unlocked():
        config.rl.loss_aggregation = aggregation
    validate_static(config)
    hp = dataclasses.replace(train_hparams(config), num_microbatches=1)
    state = fresh(hp, rules)
    _, metrics = make_train_step(hp, CONFIG, rules, state)(state, place_batch(make_batch(0), rules))
    assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))


def test_bfloat16_params_keep_float32_moments(rules):
    """bf16 trainable params (configs/tpu_v4.py keeps adapters in bf16): Adam's moments start in
    float32, so the update's float32 gradients keep every state dtype (the non-finite guard's
    two branches must agree), and the params stay bf16."""
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), init_params(CONFIG, seed=0))
    state = init_train_state(params, {}, BASE, rules)
    moments = [x for x in jax.tree.leaves(state["opt_state"]) if x.ndim > 0]
    assert moments and all(x.dtype == jnp.float32 for x in moments)
    state, _ = make_train_step(BASE, CONFIG, rules, state)(state, place_batch(make_batch(0), rules))
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(state["trainable"]))
    assert int(state["step"]) == 1

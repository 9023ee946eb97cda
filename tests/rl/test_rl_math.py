"""GRPO math against direct NumPy references written with loops, plus finite-difference gradients."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import negojax.rl as rl

TOL = 1e-5


# ---------------------------------------------------------------- NumPy references (loops, float64)

def ref_group_advantages(values, method, eps, keep):
    """values, keep: 1-D lists for one group."""
    out = [0.0] * len(values)
    kept = [i for i in range(len(values)) if keep[i]]
    n = len(kept)
    if n == 0:
        return out
    mean = sum(values[i] for i in kept) / n
    std = math.sqrt(sum((values[i] - mean) ** 2 for i in kept) / n)
    for i in kept:
        if method == "grpo":
            out[i] = (values[i] - mean) / (std + eps)
        elif method == "dr_grpo":
            out[i] = values[i] - mean
        else:
            others = [values[j] for j in kept if j != i]
            out[i] = values[i] - sum(others) / len(others) if others else values[i]
    return out


def ref_advantages(rewards, method, eps=1e-6, valid=None):
    valid = np.ones(rewards.shape, bool) if valid is None else valid
    out = np.zeros(rewards.shape)
    for p in range(rewards.shape[0]):
        out[p] = ref_group_advantages(list(rewards[p]), method, eps, list(valid[p]))
    return out


def ref_kl(lp, rlp, estimator):
    d = rlp - lp
    if estimator == "k1":
        return lp - rlp
    if estimator == "k2":
        return 0.5 * d * d
    d = min(max(d, -10.0), 10.0)
    return math.exp(d) - d - 1.0


def ref_policy_loss(logp, old, adv, mask, clip_low, clip_high, dual_clip, aggregation, ref, beta,
                    estimator, max_len):
    B, T = logp.shape
    terms = np.zeros((B, T))
    clipped = ratio_sum = kl_sum = dual = tokens = 0.0
    for b in range(B):
        for t in range(T):
            ratio = math.exp(logp[b, t] - old[b, t])
            a = adv[b]
            plain = -a * ratio
            limited = -a * min(max(ratio, 1 - clip_low), 1 + clip_high)
            term = max(plain, limited)
            is_clipped = limited > plain
            is_dual = False
            if dual_clip is not None and a < 0 and term > -a * dual_clip:
                term, is_dual = -a * dual_clip, True
            if ref is not None:
                kl = ref_kl(logp[b, t], ref[b, t], estimator)
                term += beta * kl
            terms[b, t] = term
            if mask[b, t]:
                tokens += 1
                clipped += is_clipped
                dual += is_dual
                ratio_sum += ratio
                if ref is not None:
                    kl_sum += kl
    seq_values = []
    total = 0.0
    for b in range(B):
        n = sum(mask[b])
        s = sum(terms[b, t] for t in range(T) if mask[b, t])
        total += s
        if n:
            seq_values.append(s / n if aggregation == "seq_mean_token_mean" else s / max_len)
    loss = total / tokens if aggregation == "token_mean" else sum(seq_values) / len(seq_values)
    rows = [b for b in range(B) if mask[b].any()]
    row_adv = [adv[b] for b in rows]
    mean = sum(row_adv) / len(row_adv)
    metrics = {
        "clip_fraction": clipped / tokens, "ratio_mean": ratio_sum / tokens,
        "advantage_mean": mean, "advantage_min": min(row_adv), "advantage_max": max(row_adv),
        "advantage_std": math.sqrt(sum((a - mean) ** 2 for a in row_adv) / len(row_adv)),
    }
    if ref is not None:
        metrics["kl"] = kl_sum / tokens
    if dual_clip is not None:
        metrics["dual_clip_fraction"] = dual / tokens
    return loss, metrics


def random_batch(seed, B=5, T=7, dtype=np.float32):
    rng = np.random.default_rng(seed)
    logp = -rng.uniform(0.05, 3.0, (B, T))
    old = logp + rng.normal(0.0, 0.3, (B, T))       # ratios spread over and beyond [0.8, 1.28]
    ref = logp + rng.normal(0.0, 0.5, (B, T))
    adv = rng.normal(0.0, 1.0, B)
    mask = rng.uniform(size=(B, T)) < 0.7
    mask[0] = True
    mask[-1] = False                                  # a padding row
    old[1, :3] = logp[1, :3] - 1.5                    # ratio ~4.5: beyond the dual clip when A < 0
    adv[1] = -abs(adv[1]) - 0.5
    mask[1, :3] = True
    return tuple(x.astype(dtype) if x.dtype != bool else x for x in (logp, old, adv, mask, ref))


# ---------------------------------------------------------------- advantages

@pytest.mark.parametrize("method", rl.METHODS)
@pytest.mark.parametrize("with_valid", [False, True])
def test_advantages_match_numpy_reference(method, with_valid):
    rng = np.random.default_rng(0)
    rewards = rng.uniform(0, 5, (6, 8)).astype(np.float32)
    rewards[1] = 3.0                                   # a flat group
    valid = rng.uniform(size=rewards.shape) < 0.75 if with_valid else None
    if with_valid:
        valid[2] = False
        valid[3] = [True] + [False] * 7                # one survivor: no baseline
    got = np.asarray(rl.advantages(rewards, method, valid=valid))
    want = ref_advantages(rewards.astype(np.float64), method, valid=valid)
    assert got.shape == rewards.shape
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
    jitted = jax.jit(rl.advantages, static_argnames="method")(rewards, method, valid=valid)
    np.testing.assert_allclose(np.asarray(jitted), got, atol=1e-6)


def test_valid_mask_drops_samples_from_group_statistics():
    rewards = np.array([[1.0, 2.0, 4.0, 100.0], [0.0, 5.0, 5.0, 5.0]], np.float32)
    valid = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    for method in rl.METHODS:
        got = np.asarray(rl.advantages(rewards, method, valid=valid))
        # the dropped 100.0 does not move the baseline of the rest: same as a group of three
        np.testing.assert_allclose(got[0, :3], np.asarray(rl.advantages(rewards[:1, :3], method))[0], atol=1e-6)
        assert got[0, 3] == 0.0 and not got[1].any()


def test_known_values_and_std_convention():
    rewards = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    pop_std = np.std(rewards)                          # population std (ddof=0)
    np.testing.assert_allclose(rl.advantages(rewards, "grpo"), (rewards - 1.5) / (pop_std + 1e-6), rtol=1e-6)
    np.testing.assert_allclose(rl.advantages(rewards, "dr_grpo"), rewards - 1.5)
    np.testing.assert_allclose(rl.advantages(rewards, "rloo"), [[-2.0, -2 / 3, 2 / 3, 2.0]], rtol=1e-6)


@pytest.mark.parametrize("method", rl.METHODS)
def test_slot_advantages_use_a_baseline_per_seat(method):
    rng = np.random.default_rng(1)
    rewards = rng.uniform(0, 5, (3, 6, 2)).astype(np.float32)
    rewards[..., 1] += 20.0                            # seat 1 on another scale must not leak into seat 0
    valid = rng.uniform(size=rewards.shape) < 0.8
    got = np.asarray(rl.slot_advantages(rewards, method, valid=valid))
    for seat in range(2):
        want = ref_advantages(rewards[..., seat].astype(np.float64), method, valid=valid[..., seat])
        np.testing.assert_allclose(got[..., seat], want, atol=TOL, rtol=TOL)


def test_zero_advantage_fraction():
    rewards = np.array([[2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    assert float(rl.zero_advantage_fraction(rewards)) == pytest.approx(0.5)
    valid = np.array([[1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]], bool)
    # flat groups among valid samples: rows 0 (4), 1 (3), 2 (2) of 13 valid samples
    assert float(rl.zero_advantage_fraction(rewards, valid)) == pytest.approx(9 / 13)
    # the flagged samples are exactly those with advantage 0 under every method
    adv = np.asarray(rl.advantages(rewards, "grpo", valid=valid))
    assert np.sum((adv == 0) & valid) == 9


# ---------------------------------------------------------------- KL and loss

@pytest.mark.parametrize("estimator", rl.KL_ESTIMATORS)
def test_kl_penalty_matches_reference(estimator):
    logp, _, _, _, ref = random_batch(2)
    ref = ref.copy()
    ref[0, 0], ref[0, 1] = logp[0, 0] + 14.0, logp[0, 1] - 14.0   # beyond the k3 clamp
    got = np.asarray(rl.kl_penalty(logp, ref, estimator))
    want = np.vectorize(lambda a, b: ref_kl(a, b, estimator))(logp.astype(np.float64), ref.astype(np.float64))
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


LOSS_CASES = [
    dict(aggregation=agg, dual_clip=dual, beta=beta, kl_estimator=est, with_ref=with_ref)
    for agg in rl.AGGREGATIONS
    for dual in (None, 3.0)
    for beta, est, with_ref in ((0.0, "k3", False), (0.0, "k1", True), (0.04, "k1", True),
                                (0.04, "k2", True), (0.04, "k3", True))
]


@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_policy_loss_matches_numpy_reference(case):
    logp, old, adv, mask, ref = random_batch(3)
    adv = adv * 2.0
    ref = ref if case["with_ref"] else None
    kwargs = dict(clip_low=0.2, clip_high=0.28, dual_clip=case["dual_clip"], aggregation=case["aggregation"],
                  beta=case["beta"], kl_estimator=case["kl_estimator"], max_len_norm=9)
    loss, metrics = rl.policy_loss(logp, old, adv, mask, ref_logp=ref, **kwargs)
    f64 = lambda x: None if x is None else x.astype(np.float64)
    want_loss, want_metrics = ref_policy_loss(
        f64(logp), f64(old), f64(adv), mask, 0.2, 0.28, case["dual_clip"], case["aggregation"], f64(ref),
        case["beta"], case["kl_estimator"], 9)
    np.testing.assert_allclose(float(loss), want_loss, atol=TOL, rtol=TOL)
    assert set(metrics) == set(want_metrics)
    for name, value in want_metrics.items():
        np.testing.assert_allclose(float(metrics[name]), value, atol=TOL, rtol=TOL, err_msg=name)
    assert 0.0 < float(metrics["clip_fraction"]) < 1.0  # the inputs exercise both branches
    if case["dual_clip"]:
        assert float(metrics["dual_clip_fraction"]) > 0.0


def test_beta_zero_skips_the_kl_term_but_reports_kl():
    logp, old, adv, mask, ref = random_batch(4)
    plain, plain_metrics = rl.policy_loss(logp, old, adv, mask)
    with_ref, metrics = rl.policy_loss(logp, old, adv, mask, ref_logp=ref, beta=0.0)
    assert float(plain) == float(with_ref)
    assert "kl" not in plain_metrics and float(metrics["kl"]) > 0.0


def test_loss_is_jit_friendly_and_upcasts_bf16():
    logp, old, adv, mask, ref = random_batch(10, B=6, T=65)
    mask[:-1] = True                                     # 325 tokens: not exactly representable in bf16
    kwargs = dict(aggregation="token_mean", dual_clip=3.0, beta=0.04, kl_estimator="k3")
    eager_loss, eager_metrics = rl.policy_loss(logp, old, adv, mask, ref_logp=ref, **kwargs)
    jitted = jax.jit(lambda *a: rl.policy_loss(*a[:4], ref_logp=a[4], **kwargs))
    loss, metrics = jitted(logp, old, adv, mask, ref)
    np.testing.assert_allclose(float(loss), float(eager_loss), rtol=1e-6)
    bf16 = [jnp.asarray(x, jnp.bfloat16) for x in (logp, old, ref)]
    loss_sum, normaliser, sums = rl.policy_loss_terms(bf16[0], bf16[1], adv, mask, ref_logp=bf16[2], **kwargs)
    assert loss_sum.dtype == jnp.float32 and float(normaliser) == mask.sum() == float(sums["tokens"])


def test_sum_form_accumulates_to_the_whole_batch_loss():
    logp, old, adv, mask, ref = random_batch(5, B=8, T=6)
    for aggregation in rl.AGGREGATIONS:
        kwargs = dict(aggregation=aggregation, ref_logp=ref, beta=0.1, max_len_norm=6)
        whole, whole_metrics = rl.policy_loss(logp, old, adv, mask, **kwargs)
        parts = [rl.policy_loss_terms(logp[s], old[s], adv[s], mask[s], **{**kwargs, "ref_logp": ref[s]})
                 for s in (slice(0, 3), slice(3, 8))]
        loss_sum = sum(p[0] for p in parts)
        normaliser = sum(p[1] for p in parts)
        np.testing.assert_allclose(float(loss_sum / normaliser), float(whole), rtol=1e-6)
        sums = jax.tree.map(lambda a, b: a + b, parts[0][2], parts[1][2])
        for name, value in rl.token_metrics(sums).items():
            np.testing.assert_allclose(float(value), float(whole_metrics[name]), rtol=1e-6)


def test_mean_entropy():
    rng = np.random.default_rng(6)
    entropy = rng.uniform(0, 4, (3, 5)).astype(np.float32)
    mask = rng.uniform(size=(3, 5)) < 0.5
    want = sum(entropy[b, t] for b in range(3) for t in range(5) if mask[b, t]) / mask.sum()
    np.testing.assert_allclose(float(rl.mean_entropy(entropy, mask)), want, rtol=1e-6)


GRAD_CASES = [
    dict(aggregation=agg, dual_clip=dual, beta=beta, kl_estimator=est)
    for agg, dual in (("token_mean", None), ("token_mean", 2.0), ("seq_mean_token_mean", 2.0),
                      ("seq_mean_token_sum_norm", None))
    for beta, est in ((0.0, "k3"), (0.1, "k1"), (0.1, "k2"), (0.1, "k3"))
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_gradient_wrt_logp_matches_central_finite_differences(case):
    with jax.enable_x64(True):
        logp, old, adv, mask, ref = random_batch(7, B=3, T=4, dtype=np.float64)
        adv = adv * 2.0
        ref = ref.copy()
        ref[0, 0] = logp[0, 0] + 12.0                  # inside the k3 clamp: its gradient is 0 there

        def loss_fn(lp):
            return rl.policy_loss(lp, old, adv, mask, clip_low=0.2, clip_high=0.28, ref_logp=ref,
                                  max_len_norm=6, **case)[0]

        grad = np.asarray(jax.grad(loss_fn)(jnp.asarray(logp)))
        assert grad.dtype == np.float64
        h = 1e-6
        numeric = np.zeros_like(logp)
        for index in np.ndindex(logp.shape):
            up, down = logp.copy(), logp.copy()
            up[index] += h
            down[index] -= h
            numeric[index] = (float(loss_fn(up)) - float(loss_fn(down))) / (2 * h)
        np.testing.assert_allclose(grad, numeric, atol=1e-7, rtol=1e-6)
        assert np.all(grad[~mask] == 0.0) and np.any(grad != 0.0)


def test_on_policy_old_logp_equal_to_logp_gives_the_policy_gradient():
    logp, _, adv, mask, _ = random_batch(8)
    grad = jax.grad(lambda lp: rl.policy_loss(lp, lp, adv, mask)[0])(jnp.asarray(logp))
    # ratio == 1 with d ratio / d logp == 1: gradient is -A / (masked token count) on masked tokens
    want = np.where(mask, -adv[:, None] / mask.sum(), 0.0)
    np.testing.assert_allclose(np.asarray(grad), want, atol=1e-7)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("call, fragment", [
    (lambda b: rl.advantages(np.zeros((2, 4)), "ppo"), "grpo, dr_grpo, rloo"),
    (lambda b: rl.advantages(np.zeros(4), "grpo"), "[prompts, G]"),
    (lambda b: rl.advantages(np.zeros((2, 4)), "grpo", valid=np.ones((2, 3))), "valid"),
    (lambda b: rl.slot_advantages(np.zeros((2, 4)), "rloo"), "[prompts, G, slots]"),
    (lambda b: rl.policy_loss(*b[:4], aggregation="mean"), "token_mean, seq_mean_token_mean"),
    (lambda b: rl.policy_loss(*b[:4], ref_logp=b[4], kl_estimator="k4", beta=0.1), "k1, k2, k3"),
    (lambda b: rl.kl_penalty(b[0], b[4], "k9"), "k1, k2, k3"),
    (lambda b: rl.policy_loss(*b[:4], beta=0.1), "ref_logp"),
    (lambda b: rl.policy_loss(*b[:4], aggregation="seq_mean_token_sum_norm"), "max_len_norm"),
    (lambda b: rl.policy_loss(*b[:4], dual_clip=0.5), "dual_clip"),
    (lambda b: rl.policy_loss(*b[:4], clip_low=1.5), "clip_low"),
    (lambda b: rl.policy_loss(b[0], b[1][:, :3], *b[2:4]), "old_logp"),
    (lambda b: rl.policy_loss(b[0], b[1], b[2][:2], b[3]), "advantages [B]"),
])
def test_user_errors_are_one_line(call, fragment):
    with pytest.raises(ValueError) as info:
        call(random_batch(9))
    message = str(info.value)
    assert "\n" not in message and fragment in message


def test_public_entry_is_the_function():
    assert callable(rl.advantages)
    out = rl.advantages(jnp.ones((2, 8)), "grpo")
    assert out.shape == (2, 8) and not np.asarray(out).any()


def test_schedule_counts_training_steps_under_several_inner_updates():
    """With rl.num_inner_updates=k every inner update advanced the optimizer's count, while
    total_steps is train.steps: the cosine ended after train.steps / k steps. The schedule is
    one of training steps: every inner update of step s uses the rate of step s."""
    import numpy as np
    from negojax.rl import TrainHParams, learning_rate_schedule, make_optimizer
    hp = TrainHParams(learning_rate=1.0, warmup_steps=2, total_steps=10, final_lr_fraction=0.1,
                      num_inner_updates=3)
    tx, schedule = make_optimizer(hp)
    by_step = learning_rate_schedule(1.0, 2, 10, 0.1)
    expected = [float(by_step(u // 3)) for u in range(30)]  # 10 steps of 3 inner updates
    np.testing.assert_allclose([float(schedule(u)) for u in range(30)], expected, rtol=1e-6)
    # What the optimizer applies: with a constant gradient Adam's step is the rate itself.
    params, state, applied = {"w": np.float32(0.0)}, None, []
    state = tx.init(params)
    for _ in range(30):
        updates, state = tx.update({"w": np.float32(1.0)}, state, params)
        applied.append(-float(updates["w"]))
    np.testing.assert_allclose(applied, expected, rtol=1e-4)
    assert applied[-1] > hp.final_lr_fraction  # step 9 of 10: the cosine has not ended

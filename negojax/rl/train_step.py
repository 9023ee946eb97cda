"""The GRPO train step: one jitted (state, batch) -> (state, metrics) over the device mesh.

State (a dict pytree, every leaf placed by the logical-axis rules):
  trainable        what the optimizer updates: the full params, or {"layers": {"lora": adapters}}
  frozen           the rest of the params tree ({} for full fine-tuning; the base model under LoRA,
                   possibly bf16 or int8); trainable and frozen merge into one params tree
  ref              reference params for the KL term when they are not the frozen base ({} else)
  opt_state        optax AdamW state over `trainable` only
  step             applied updates; skipped_updates: updates dropped by the non-finite guard

The batch is a `negojax.rl.batch.TrainBatch`, which documents its fields.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from negojax.models.config import ModelConfig
from negojax.models.lora import frozen_axes
from negojax.models.transformer import (hidden_states, logprobs_from_hidden, param_axes,
                                       prefix_tree_mask)
from negojax.parallel.sharding import LogicalRules
from negojax.parallel.vocab_parallel import vocab_parallel_logprobs
from negojax.rl.batch import TrainBatch
from negojax.rl.losses import AGGREGATIONS, KL_ESTIMATORS, policy_loss_terms, token_metrics
from negojax.rl.optimizer import make_optimizer



@dataclasses.dataclass(frozen=True)
class TrainHParams:
    learning_rate: float = 5e-6
    warmup_steps: int = 10
    total_steps: int = 2000
    final_lr_fraction: float = 0.1
    weight_decay: float = 0.0
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: Optional[float] = None
    aggregation: str = "token_mean"
    max_len_norm: Optional[int] = None
    beta: float = 0.0
    kl_estimator: str = "k3"
    num_microbatches: int = 1
    num_inner_updates: int = 1
    logprob_chunk: int = 128
    remat: bool = False

    def __post_init__(self):
        """Each bad value is a one-line ValueError that starts with the field's name."""
        def bad(name: str, need: str):
            raise ValueError(f"{name}: {getattr(self, name)!r} {need}")

        def number(name: str):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                bad(name, "must be a finite number")
            return value

        def integer(name: str, low: int):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                bad(name, f"must be an integer >= {low}")

        if number("learning_rate") <= 0:
            bad("learning_rate", "must be > 0")
        integer("warmup_steps", 0)
        integer("total_steps", 1)
        if not 0 <= number("final_lr_fraction") <= 1:
            bad("final_lr_fraction", "must lie in [0, 1]")
        for name in ("weight_decay", "beta"):
            if number(name) < 0:
                bad(name, "must be >= 0")
        for name in ("adam_b1", "adam_b2"):
            if not 0 <= number(name) < 1:
                bad(name, "must lie in [0, 1)")
        if number("adam_eps") <= 0:
            bad("adam_eps", "must be > 0")
        if number("max_grad_norm") <= 0:
            bad("max_grad_norm", "must be > 0 (it clips the global gradient norm)")
        if not 0 <= number("clip_low") < 1:
            bad("clip_low", "must lie in [0, 1)")
        if number("clip_high") < 0:
            bad("clip_high", "must be >= 0")
        if self.dual_clip is not None and number("dual_clip") <= 1:
            bad("dual_clip", "must be > 1, or None")
        try:
            AGGREGATIONS.get(self.aggregation)
        except ValueError as error:  # its message names the config key; ours, the field
            raise ValueError(f"aggregation: {str(error).partition(': ')[2]}") from None
        if self.aggregation == "seq_mean_token_sum_norm" and (
                not isinstance(self.max_len_norm, int) or self.max_len_norm < 1):
            bad("max_len_norm", "must be an integer >= 1 (the constant generation budget) for "
                "the seq_mean_token_sum_norm aggregation")
        if self.kl_estimator not in KL_ESTIMATORS:
            bad("kl_estimator", f"is not one of {', '.join(KL_ESTIMATORS)}")
        for name in ("num_microbatches", "num_inner_updates", "logprob_chunk"):
            integer(name, 1)
        if not isinstance(self.remat, bool):
            bad("remat", "must be True or False")



# ------------------------------------------------------------------------------ params parts


def combine(trainable: dict, frozen: dict) -> dict:
    """One params tree from the trainable and frozen parts (disjoint nested dicts)."""
    out = dict(frozen)
    for key, value in trainable.items():
        out[key] = combine(value, frozen[key]) if isinstance(value, dict) and key in frozen \
            else value
    return out


def tree_axes(tree: dict) -> dict:
    if not tree:
        return {}
    return frozen_axes(tree, param_axes(tree)) if "layers" in tree else param_axes(tree)


def _place(tree, shardings, share: bool = False):
    """Host or single-device arrays -> global arrays; works across processes (same values).
    With `share`, an array already placed with its sharding is kept, not copied."""
    def put(x, sharding):
        if share and isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
            return x
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree.map(put, tree, shardings)


def state_shardings(state, rules: LogicalRules, tx: optax.GradientTransformation) -> dict:
    """NamedShardings for every state leaf: params by their logical axes, scalars replicated."""
    params_sh = {part: rules.tree_shardings(tree_axes(state[part]), state[part])
                 for part in ("trainable", "frozen", "ref")}
    replicated = rules.replicated()
    opt_sh = optax.tree_map_params(tx, lambda _, s: s, state["opt_state"], params_sh["trainable"],
                                   transform_non_params=lambda _: replicated)
    return {**params_sh, "opt_state": opt_sh, "step": replicated, "skipped_updates": replicated}


def _init_opt_state(tx, trainable: dict):
    """Adam's moments in float32 whatever the params' dtype: they accumulate float32 gradients
    (summed over microbatches in float32), and moments kept in bfloat16 would both lose them
    and change dtype in the first update."""
    return tx.init(jax.tree.map(lambda p: p.astype(jnp.float32), trainable))


def _default_ref(trainable: dict, frozen: dict, hp: TrainHParams, ref: Optional[dict]) -> dict:
    """With beta > 0 and no frozen base, the reference is a copy of the initial trainable params
    unless `ref` is given; under LoRA the frozen base is the reference, so none is kept."""
    if ref is None:
        ref = trainable if hp.beta != 0 and not frozen else {}
    return ref


def train_state_shapes(trainable: dict, frozen: dict, hp: TrainHParams, rules: LogicalRules, *,
                       ref: Optional[dict] = None) -> dict:
    """The state `init_train_state` would place, as ShapeDtypeStructs with their shardings:
    what `make_train_step` needs to compile without any weights (`trainable` and `frozen` may
    be arrays or shapes)."""
    tx, _ = make_optimizer(hp)
    parts = {"trainable": trainable, "frozen": frozen,
             "ref": _default_ref(trainable, frozen, hp, ref)}
    shapes = {**jax.eval_shape(lambda: parts),
              "opt_state": jax.eval_shape(lambda t: _init_opt_state(tx, t), trainable),
              "step": jax.ShapeDtypeStruct((), jnp.int32),
              "skipped_updates": jax.ShapeDtypeStruct((), jnp.int32)}
    sh = state_shardings(shapes, rules, tx)
    return jax.tree.map(lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                                 sharding=sharding), shapes, sh)


def init_train_state(trainable: dict, frozen: dict, hp: TrainHParams, rules: LogicalRules, *,
                     ref: Optional[dict] = None) -> dict:
    """A placed train state. For full fine-tuning pass (params, {}); under LoRA pass
    ({"layers": {"lora": adapters}}, base). With beta > 0 and no frozen base, the reference is a
    copy of the initial trainable params unless `ref` is given.

    The frozen base is never donated or copied by the step, so a frozen array already laid out
    as the step wants is shared with the caller (the rollouts' base), not duplicated."""
    tx, _ = make_optimizer(hp)
    parts = {"trainable": trainable, "frozen": frozen,
             "ref": _default_ref(trainable, frozen, hp, ref)}
    sh = jax.tree.map(lambda s: s.sharding, train_state_shapes(trainable, frozen, hp, rules,
                                                                ref=ref))
    placed = {part: _place(parts[part], sh[part], share=part == "frozen") for part in parts}

    def rest(trainable):
        return {"opt_state": _init_opt_state(tx, trainable), "step": jnp.zeros((), jnp.int32),
                "skipped_updates": jnp.zeros((), jnp.int32)}

    rest_sh = {k: sh[k] for k in ("opt_state", "step", "skipped_updates")}
    return {**placed, **jax.jit(rest, out_shardings=rest_sh)(placed["trainable"])}


# ------------------------------------------------------------------------------ log-probs


def sequence_logprobs(params, config: ModelConfig, tokens, rules: LogicalRules, chunk: int,
                      positions=None, packing: Optional[dict] = None, remat: bool = False):
    """logp[b, t] = log p(tokens[b, t] | tokens[b, :t]) and that distribution's entropy [B, T].

    Position 0 has no context and gets 0. With `positions` [B, P] only those positions are
    computed and both outputs are [B, P]; entries that pad `positions` (0) hold values of no
    meaning, which the loss mask gathered at the same positions drops.
    With a tensor axis that divides the vocabulary the unembedding runs vocab-parallel under
    shard_map, so full logits never exist on one device.
    `packing` holds a packed batch's position, segment and branch ids, aligned with tokens.
    `remat` rematerialises each layer in the backward pass (`transformer.hidden_states`).
    """
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    rope_positions = mask = None
    if packing is not None:
        rope_positions = packing["position_ids"][:, :-1]
        mask = prefix_tree_mask(packing["segment_ids"][:, :-1], packing["branch_ids"][:, :-1])
    h = hidden_states(params, config, inputs, rope_positions, rules.constrain, mask, remat)
    if positions is not None:  # h[:, p - 1] predicts tokens[:, p]
        before = jnp.maximum(positions - 1, 0)
        h = jnp.take_along_axis(h, before[..., None], axis=1)
        targets = jnp.take_along_axis(targets, before, axis=1)
    tensor = rules.mesh.shape["tensor"]
    if tensor > 1 and config.vocab_size % tensor == 0:
        w = params["embed"].T if config.tie_word_embeddings else params["lm_head"]
        logp, entropy = vocab_parallel_logprobs(h, w.astype(config.dtype), targets, rules,
                                                chunk=chunk)
    else:
        logp, entropy = logprobs_from_hidden(params, config, h, targets, chunk=chunk)
    if positions is not None:
        return logp, entropy
    shift = lambda a: jnp.pad(a, ((0, 0), (1, 0)))
    return shift(logp), shift(entropy)


# ------------------------------------------------------------------------------ the step


def make_train_step(hp: TrainHParams, model_config: ModelConfig, rules: LogicalRules, state):
    """The jitted step for states laid out like `state` (a state, or `train_state_shapes`).

    All of the state but its frozen base is donated (`TrainStep`). Metrics: loss, grad_norm,
    entropy, clip_fraction, ratio_mean, kl, lr, skipped_updates, tokens; with num_inner_updates > 1 they describe the last inner update.
    """
    tx, schedule = make_optimizer(hp)
    st_sh = state_shardings(state, rules, tx)
    batch_sh = rules.sharding(("act_batch",))
    chunk = hp.logprob_chunk

    def loss_terms(trainable, frozen, ref, mb: TrainBatch):
        params = combine(trainable, frozen)
        positions, packing = mb.loss_positions, mb.packing()
        per_token = {k: getattr(mb, k) for k in ("loss_mask", "old_logp", "ref_logp")
                     if getattr(mb, k) is not None}
        advantages = mb.advantages
        if packing is not None:
            per_token["advantages"] = advantages
            # One id per (segment, branch): a row's sequences, for the sequence means.
            per_token["sequence_ids"] = (packing["segment_ids"] * mb.tokens.shape[1]
                                         + packing["branch_ids"])
        if positions is not None:
            per_token = {k: jnp.take_along_axis(v, positions, axis=1) for k, v in per_token.items()}
        logp, entropy = sequence_logprobs(params, model_config, mb.tokens, rules, chunk,
                                          positions, packing, hp.remat)
        ref_logp = per_token.get("ref_logp")
        if ref_logp is None and hp.beta != 0:
            # Under LoRA the frozen base (adapters left out) is the reference.
            reference = jax.lax.stop_gradient(ref if ref else frozen)
            ref_logp, _ = sequence_logprobs(reference, model_config, mb.tokens, rules, chunk,
                                            positions, packing)
        mask = per_token["loss_mask"].astype(jnp.float32)
        loss_sum, normaliser, sums = policy_loss_terms(
            logp, per_token["old_logp"], per_token.get("advantages", advantages), mask,
            clip_low=hp.clip_low, clip_high=hp.clip_high, dual_clip=hp.dual_clip,
            aggregation=hp.aggregation, ref_logp=ref_logp, beta=hp.beta,
            kl_estimator=hp.kl_estimator, max_len_norm=hp.max_len_norm,
            sequence_ids=per_token.get("sequence_ids"))
        sums = {**sums, "entropy": (jax.lax.stop_gradient(entropy) * mask).sum(),
                "normaliser": normaliser}
        return loss_sum, sums

    grad_fn = jax.value_and_grad(loss_terms, has_aux=True)

    def accumulate(state, batch):
        """Sums of loss terms, metric sums and gradients over the microbatches."""
        mbs = batch.microbatches(hp.num_microbatches, rules.constrain)
        args = (state["trainable"], state["frozen"], state["ref"])
        first = jax.tree.map(lambda x: x[0], mbs)
        shapes = jax.eval_shape(grad_fn, *args, first)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)

        def body(acc, mb):
            # A microbatch of padding rows only (no loss token anywhere) adds exactly zero, so
            # its forward and backward are skipped; the trainer packs padding rows together.
            out = jax.lax.cond(
                jnp.any(mb.loss_mask > 0),
                lambda: jax.tree.map(lambda o: o.astype(jnp.float32), grad_fn(*args, mb)),
                lambda: zeros)
            return jax.tree.map(jnp.add, acc, out), None

        ((loss_sum, sums), grads), _ = jax.lax.scan(body, zeros, mbs)
        return loss_sum, sums, grads

    def update(state, batch):
        loss_sum, sums, grads = accumulate(state, batch)
        normaliser = jnp.maximum(sums["normaliser"], 1.0)
        loss = loss_sum / normaliser
        grads = jax.tree.map(lambda g: g / normaliser, grads)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        def apply(state):
            updates, opt_state = tx.update(grads, state["opt_state"], state["trainable"])
            return {**state, "trainable": optax.apply_updates(state["trainable"], updates),
                    "opt_state": opt_state, "step": state["step"] + 1}

        def skip(state):
            return {**state, "skipped_updates": state["skipped_updates"] + 1}

        lr = schedule(state["step"])
        new_state = jax.lax.cond(finite, apply, skip, state)
        tokens = sums["tokens"]
        metrics = {**token_metrics(sums), "loss": loss, "grad_norm": grad_norm,
                   "entropy": sums["entropy"] / jnp.maximum(tokens, 1.0),
                   "lr": jnp.asarray(lr, jnp.float32), "tokens": tokens,
                   "skipped_updates": new_state["skipped_updates"]}
        metrics.setdefault("kl", jnp.zeros((), jnp.float32))
        return new_state, metrics

    def step(changing, frozen, batch: TrainBatch):
        batch.check(rules.batch_size_multiple * hp.num_microbatches)

        def one(changing, _):
            state, metrics = update({**changing, "frozen": frozen}, batch)
            return _without_frozen(state), metrics

        changing, metrics = jax.lax.scan(one, changing, None, length=hp.num_inner_updates)
        return changing, jax.tree.map(lambda m: m[-1], metrics)

    changing_sh = _without_frozen(st_sh)
    return TrainStep(jax.jit(step, in_shardings=(changing_sh, st_sh["frozen"], batch_sh),
                             out_shardings=(changing_sh, rules.replicated()), donate_argnums=0))


def _without_frozen(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "frozen"}


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """(state, batch) -> (state, metrics). Everything but the frozen base is donated; the base
    goes in as its own argument and comes back as the same arrays, so the rollouts, the judge
    and the reference can keep sharing it across steps."""
    jitted: object

    def __call__(self, state: dict, batch: TrainBatch):
        changing, metrics = self.jitted(_without_frozen(state), state["frozen"], batch)
        return {**changing, "frozen": state["frozen"]}, metrics

    def lower(self, state: dict, batch: TrainBatch):
        return self.jitted.lower(_without_frozen(state), state["frozen"], batch)


def place_batch(batch: TrainBatch, rules: LogicalRules) -> TrainBatch:
    """A single-process batch (host or device arrays) placed with the step's batch sharding."""
    sharding = rules.sharding(("act_batch",))
    return jax.tree.map(lambda x: jax.device_put(x, sharding), batch)

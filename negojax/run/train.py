"""The GRPO self-play training loop.

One step: draw this host's tasks -> lockstep self-play rollouts (policy in seat 0, the opponent in
the others) -> the judge scores agreed final solutions -> rewards and group-relative advantages ->
a packed, bucketed train batch (rows shared by sequences and by their common prompt stems,
`negojax.rl.packing`) -> the jitted train step -> metrics, transcripts, checkpoint.
Everything random derives from (config.seed, step, process), and a checkpoint carries the train
state, the opponent snapshot(s) and the task sampler's position, so a restarted run continues
exactly where the interrupted one stopped.

Multi-process runs (config.distributed) train on one global mesh; each process rolls out its own
prompts on a mesh of its local devices, with the current trainable params gathered to it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

import negojax
from negojax.checkpoints.hf import load_hf_config
from negojax.checkpoints.orbax_checkpoint import TrainCheckpointer
from negojax.data import TaskSampler, load_tasks
from negojax.metrics_logging import MetricsLogger
from negojax.model import Model, resolve_model_dir
from negojax.models import lora, transformer
from negojax.models.config import PRESETS, resolve_dtype
from negojax.negotiation.config import NegotiationConfig
from negojax.negotiation.engine import NegotiationEngine
from negojax.negotiation.records import Rollout
from negojax.parallel.mesh import make_mesh
from negojax.parallel.multihost import host_local_to_global, is_main_process
from negojax.parallel.sharding import LogicalRules
from negojax.rewards import compose_rewards
from negojax.rl import advantages, zero_advantage_fraction
from negojax.rl.packing import attention_parity_length, pack_sequences
from negojax.rl.train_step import (TrainHParams, combine, init_train_state, loss_positions,
                                   make_train_step)
from negojax.run_config import make_http_judge
from negojax.sampling import bucket
from negojax.tokenization import load_tokenizer

CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"


# ------------------------------------------------------------------------------ model and mesh


def load_policy(model_cfg, rules: Optional[LogicalRules] = None) -> Model:
    """The configured model. `overrides` re-shape the architecture (random init) while keeping a
    checkpoint's tokenizer, which is how tiny test models speak real text."""
    overrides = dict(model_cfg.overrides)
    if not overrides:
        return negojax.load_model(model_cfg.path, dtype=model_cfg.dtype,
                                  param_dtype=model_cfg.param_dtype,
                                  random_init=model_cfg.random_init, rules=rules)
    dtypes = dict(dtype=resolve_dtype(model_cfg.dtype),
                  param_dtype=resolve_dtype(model_cfg.param_dtype))
    if model_cfg.path in PRESETS and not os.path.exists(model_cfg.path):
        config, tokenizer, source = PRESETS[model_cfg.path].replace(**dtypes), None, None
    else:
        source = resolve_model_dir(model_cfg.path)
        config = load_hf_config(source).replace(**dtypes)
        tokenizer = load_tokenizer(source)
    config = config.replace(**overrides)
    params = transformer.init_params(config, 0)
    if rules is not None:
        params = jax.device_put(params, rules.tree_shardings(transformer.param_axes(params),
                                                             params))
    return Model(config, params, tokenizer, source, rules)


def local_rules(mesh_sizes: dict) -> LogicalRules:
    """Rules over this process's devices, for rollouts and the judge; the global mesh itself
    when there is one process."""
    if jax.process_count() == 1:
        return LogicalRules(make_mesh(**mesh_sizes))
    devices = jax.local_devices()
    tensor = max(t for t in range(1, len(devices) + 1)
                 if len(devices) % t == 0 and t <= mesh_sizes["tensor"])
    return LogicalRules(make_mesh(data=len(devices) // tensor, fsdp=1, tensor=tensor,
                                  devices=devices))


def make_judge(config, policy: Model, workdir: str):
    if config.judge.kind == "http":
        return make_http_judge(config, cache_dir=os.path.join(workdir, "judge_cache"))
    from negojax.rewards import LocalJudge
    if config.judge.path == "policy":
        return LocalJudge(policy)
    return LocalJudge(negojax.load_model(config.judge.path, dtype=config.model.dtype,
                                         rules=policy.rules), rules=policy.rules)


def negotiation_config(rollout_cfg, *, greedy: bool = False) -> NegotiationConfig:
    r = rollout_cfg
    return NegotiationConfig(
        max_turns=r.max_turns, context_turns=r.context_turns or None,
        max_new_tokens=r.max_new_tokens, temperature=0.0 if greedy else r.temperature,
        top_p=1.0 if greedy else r.top_p,
        final_temperature=0.0 if greedy else r.final_temperature,
        final_top_p=1.0 if greedy else r.final_top_p,
        final_max_new_tokens=r.final_max_new_tokens, first_speaker=r.first_speaker,
        agreement=r.agreement, marker=r.marker, agreement_threshold=r.agreement_threshold,
        train_on_final_solution=r.train_on_final_solution)


def train_hparams(config) -> TrainHParams:
    o, rl = config.optim, config.rl
    return TrainHParams(
        learning_rate=o.lr, warmup_steps=o.warmup_steps,
        total_steps=max(config.train.steps, o.warmup_steps + 1),
        final_lr_fraction=1.0 if o.schedule == "constant" else o.final_lr_fraction,
        weight_decay=o.weight_decay, max_grad_norm=o.max_grad_norm, clip_low=rl.clip_low,
        clip_high=rl.clip_high, aggregation=rl.loss_aggregation, beta=rl.beta,
        kl_estimator=rl.kl_estimator, num_microbatches=rl.microbatches,
        num_inner_updates=rl.num_inner_updates, logprob_chunk=rl.logprob_chunk)


def split_params(policy: Model, lora_cfg):
    """(trainable, frozen, model config): full fine-tuning or LoRA adapters over a frozen base."""
    if lora_cfg.rank == 0:
        return policy.params, {}, policy.config
    adapters, config = lora.init_lora(policy.params, policy.config, lora_cfg.rank,
                                      lora_cfg.alpha, tuple(lora_cfg.targets))
    frozen = lora.freeze_base(policy.params, lora_cfg.base_dtype, tuple(lora_cfg.targets))
    return {"layers": {"lora": adapters}}, frozen, config


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    return int(np.random.SeedSequence([seed, step, salt]).generate_state(1, np.uint32)[0] >> 1)


# ------------------------------------------------------------------------------ rollouts


def run_rollouts(engine: NegotiationEngine, tasks, *, group_size: int, policy, opponent,
                 trainable_seats, seed: int, mode: str) -> Rollout:
    """Rollouts for tasks with any number of personas: one engine call per seat count, merged
    back into task order (the engine needs one params pytree per persona). trainable_seats None
    trains every seat."""
    by_seats: dict[int, list[int]] = {}
    for i, task in enumerate(tasks):
        by_seats.setdefault(len(task.personas), []).append(i)
    G, P = group_size, len(tasks)
    dialogues, finals = [None] * (P * G), [None] * (P * G)
    agreed, rounds = np.zeros((P, G), bool), np.zeros((P, G), np.int32)
    sequences, stats = [], {}
    for seats, indices in sorted(by_seats.items()):
        part = engine.rollout([tasks[i] for i in indices], group_size=G,
                              seat_params=[policy] + [opponent] * (seats - 1),
                              trainable_seats=tuple(range(seats)) if trainable_seats is None
                              else tuple(s for s in trainable_seats if s < seats),
                              seed=step_seed(seed, seats), mode=mode)
        for j, i in enumerate(indices):
            agreed[i], rounds[i] = part.agreed[j], part.rounds[j]
            for g in range(G):
                dialogues[i * G + g] = {**part.dialogues[j * G + g], "prompt_index": i}
                finals[i * G + g] = part.final_solutions[j * G + g]
        sequences += [dataclasses.replace(s, prompt_index=indices[s.prompt_index])
                      for s in part.sequences]
        for key, value in part.stats.items():
            stats[key] = stats.get(key, 0) + value
    return Rollout(dialogues, sequences, agreed, rounds, finals, stats)


def score_rollout(judge, tasks, rollout: Rollout, group_size: int) -> np.ndarray:
    """CA scores [P, G] of the agreed final solutions (NaN elsewhere and where judging failed)."""
    scores = np.full(len(rollout.final_solutions), np.nan)
    rows = [k for k, s in enumerate(rollout.final_solutions) if s is not None]
    if rows:
        t = [tasks[k // group_size] for k in rows]
        scores[rows] = judge.ca_score([x.dilemma for x in t], [x.personas for x in t],
                                      [rollout.final_solutions[k] for k in rows])
    return scores.reshape(len(tasks), group_size)


def _padded_length(n: int) -> int:
    """Sequence-length buckets: powers of two up to 256, then multiples of 256."""
    return bucket(n) if n <= 256 else -(-n // 256) * 256


def row_length_candidates(longest: int) -> tuple[int, ...]:
    """Row lengths packing may choose from: the longest sequence's bucket, or a bucket half as
    long again, which lets more sequences share one copy of their prompt stem."""
    return tuple(sorted({_padded_length(longest), _padded_length(longest * 3 // 2)}))


def build_batch(packed: dict, *, rows: int, positions_width: int, microbatches: int = 1) -> dict:
    """The train batch: packed rows (`pack_sequences`) padded to `rows`; padding rows carry no
    loss. Only the loss positions (at most positions_width per row) are unembedded in the step.

    The step's microbatch i holds rows i, i + microbatches, ...; packed rows fill microbatches
    one after another, so padding rows share microbatches, which the step skips."""
    batch = {key: np.zeros((rows,) + value.shape[1:], value.dtype)
             for key, value in packed.items()}
    k = microbatches if rows % microbatches == 0 else 1
    per_microbatch = rows // k
    for j in range(len(packed["tokens"])):
        b = (j % per_microbatch) * k + j // per_microbatch
        for key, value in packed.items():
            batch[key][b] = value[j]
    batch["loss_positions"] = loss_positions(batch["loss_mask"], positions_width)
    return batch


def _allgather(x):
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(np.asarray(x)))


def _to_host(tree):
    """Global arrays -> numpy on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


# ------------------------------------------------------------------------------ the trainer


class Trainer:
    def __init__(self, config, mesh_sizes: dict):
        self.config = config
        self.workdir = config.workdir
        self.main = is_main_process()
        self.rules = LogicalRules(make_mesh(**mesh_sizes))
        self.local_rules = local_rules(mesh_sizes)
        self.policy = load_policy(config.model, self.local_rules)
        if self.policy.tokenizer is None:
            raise ValueError("config.model: a preset without a checkpoint has no tokenizer; set "
                             "model.path to a checkpoint (with model.overrides for a tiny model)")
        self.judge = make_judge(config, self.policy, self.workdir)
        trainable, self.local_frozen, self.model_config = split_params(self.policy, config.lora)
        self.hp = train_hparams(config)
        self.state = init_train_state(trainable, self.local_frozen, self.hp, self.rules,
                                      seed=config.seed)
        self.step_fn = make_train_step(self.hp, self.model_config, self.rules, self.state)
        self.engine = NegotiationEngine(negotiation_config(config.rollout), self.model_config,
                                        self.policy.tokenizer, judge=self.judge,
                                        rules=self.local_rules)
        r = config.rollout
        self.prompts_per_host = r.prompts_per_step // jax.process_count()
        self.sampler = TaskSampler(load_tasks("train"), seed=config.seed,
                                   process_index=jax.process_index(),
                                   process_count=jax.process_count())
        self.opponents: list = []  # snapshots of the trainable params, newest last
        self.checkpointer = TrainCheckpointer(os.path.join(self.workdir, CHECKPOINT_DIR),
                                              save_every=config.train.checkpoint_every,
                                              keep=config.train.keep_checkpoints)
        self.step = 0

    # -------------------------------------------------------------- params for rollouts
    def _local(self, tree):
        """A copy of the trainable params on this process's devices (survives donation)."""
        if jax.process_count() == 1:
            return jax.tree.map(jnp.copy, tree)
        # Replicated over the local devices: fine for LoRA adapters and small models; a large
        # full fine-tune would shard these by their logical axes instead.
        replicated = self.local_rules.replicated()
        return jax.tree.map(lambda x: jax.device_put(x, replicated), _to_host(tree))

    def _policy_params(self):
        trainable = self.state["trainable"] if jax.process_count() == 1 \
            else self._local(self.state["trainable"])
        return combine(trainable, self.local_frozen)

    def _seats(self, step: int, policy):
        """(opponent params, trainable seats) for this step's rollout."""
        r = self.config.rollout
        if r.opponent == "live":
            return policy, None
        if (step - 1) % r.opponent_refresh == 0 or not self.opponents:
            if r.opponent_refresh == 1 and r.opponent == "frozen":
                # Refreshed every step: the snapshot equals the policy, so share its params
                # (one batched sampler call per turn, no copy).
                self.opponents = []
                return policy, (0,)
            self.opponents.append(self._local(self.state["trainable"]))
            self.opponents = self.opponents[-(r.opponent_pool_size if r.opponent == "pool"
                                              else 1):]
        pick = np.random.default_rng([self.config.seed, step, 7]).integers(len(self.opponents)) \
            if r.opponent == "pool" else -1
        return combine(self.opponents[pick], self.local_frozen), (0,)

    # -------------------------------------------------------------- checkpoints
    def _checkpoint_tree(self) -> dict:
        s = self.state
        return {"trainable": s["trainable"], "opt_state": s["opt_state"], "step": s["step"],
                "skipped_updates": s["skipped_updates"],
                "rng": jax.random.key_data(s["rng"]),
                "opponents": {str(i): o for i, o in enumerate(self.opponents)}}

    def _abstract_tree(self, meta: dict) -> dict:
        def abstract(x, sharding=None):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or x.sharding)
        tree = jax.tree.map(abstract, {k: v for k, v in self._checkpoint_tree().items()
                                       if k != "opponents"})
        trainable = jax.tree.map(abstract, self.state["trainable"])
        local = None if jax.process_count() == 1 else self.local_rules.replicated()
        opponent = jax.tree.map(lambda x: abstract(x, local), trainable)
        tree["opponents"] = {str(i): opponent for i in range(int(meta["num_opponents"]))}
        return tree

    def _meta(self) -> dict:
        states = _allgather(np.asarray([self.sampler.state()["epoch"],
                                        self.sampler.state()["position"]], np.int64))
        return {"step": self.step, "num_opponents": len(self.opponents),
                "sampler": self.sampler.state(),
                "sampler_positions": np.asarray(states).reshape(-1, 2).tolist()}

    def save(self) -> None:
        self.checkpointer.save(self.step, self._checkpoint_tree(), self._meta())

    def restore(self) -> bool:
        found = self.checkpointer.restore_latest(self._abstract_tree)
        if found is None:
            return False
        step, tree, meta = found
        self.state = {**self.state, "trainable": tree["trainable"],
                      "opt_state": tree["opt_state"], "step": tree["step"],
                      "skipped_updates": tree["skipped_updates"],
                      "rng": jax.random.wrap_key_data(tree["rng"])}
        self.opponents = [tree["opponents"][str(i)] for i in range(meta["num_opponents"])]
        epoch, position = meta["sampler_positions"][jax.process_index()]
        self.sampler.restore({**self.sampler.state(), "epoch": epoch, "position": position})
        self.step = step
        return True

    # -------------------------------------------------------------- one step
    def train_step(self, step: int, log: MetricsLogger) -> dict:
        config, G = self.config, self.config.rollout.group_size
        tasks = self.sampler.next_batch(self.prompts_per_host)
        start = time.perf_counter()
        policy = self._policy_params()
        opponent, trainable_seats = self._seats(step, policy)
        rollout = run_rollouts(self.engine, tasks, group_size=G, policy=policy,
                               opponent=opponent, trainable_seats=trainable_seats,
                               seed=step_seed(config.seed, step, jax.process_index()),
                               mode="train")
        time_rollout = time.perf_counter() - start - rollout.stats["time_agreement_s"]
        start = time.perf_counter()
        ca = score_rollout(self.judge, tasks, rollout, G)
        time_judge = time.perf_counter() - start + rollout.stats["time_agreement_s"]
        overlong = np.asarray([sum(t["hit_token_cap"] for t in d["turns"])
                               for d in rollout.dialogues], np.float64).reshape(-1, G)
        components = {k: v for k, v in config.reward.components.items() if v}
        rewards, valid, parts = compose_rewards(ca, rollout.agreed, fallback=config.reward.fallback,
                                                components=components,
                                                dialogue_stats={"overlong_turns": overlong})
        adv = np.asarray(advantages(rewards, config.rl.advantage, valid=valid))

        start = time.perf_counter()
        batch = host_local_to_global(self._train_batch(rollout.sequences, adv), self.rules)
        self.state, metrics = self.step_fn(self.state, batch)
        metrics = jax.device_get(metrics)
        time_update = time.perf_counter() - start

        all_rewards = _allgather(rewards).reshape(-1)
        all_agreed = _allgather(rollout.agreed).reshape(-1)
        all_rounds = _allgather(rollout.rounds).reshape(-1)
        generated = float(_allgather(np.asarray(rollout.stats["generated_tokens"])).sum())
        zero_adv = float(np.mean(_allgather(np.asarray(zero_advantage_fraction(rewards, valid)))))
        row = {
            "reward_mean": float(all_rewards.mean()), "reward_std": float(all_rewards.std()),
            "reward_min": float(all_rewards.min()), "reward_max": float(all_rewards.max()),
            "agreement_rate": float(all_agreed.mean()), "mean_rounds": float(all_rounds.mean()),
            "kl": float(metrics["kl"]), "clip_fraction": float(metrics["clip_fraction"]),
            "entropy": float(metrics["entropy"]), "grad_norm": float(metrics["grad_norm"]),
            "loss": float(metrics["loss"]), "lr": float(metrics["lr"]),
            "skipped_updates": int(metrics["skipped_updates"]),
            "rollout_tokens_per_s": generated / max(time_rollout, 1e-9),
            "train_tokens_per_s": float(metrics["tokens"]) / max(time_update, 1e-9),
            "time_rollout_s": time_rollout, "time_judge_s": time_judge,
            "time_update_s": time_update, "zero_advantage_fraction": zero_adv,
        }
        for k, record in enumerate(rollout.dialogues):
            p, g = divmod(k, G)
            record["reward"] = float(rewards[p, g])
            record["reward_components"] = {name: float(v[p, g]) for name, v in parts.items()}
        log.transcripts(step, rollout.dialogues)
        return row

    def _train_batch(self, sequences, adv: np.ndarray) -> dict:
        """This host's part of the train batch; row count and lengths agree across hosts."""
        longest = int(_allgather(np.asarray(max([len(s.tokens) for s in sequences] or [1]))).max())
        seq_adv = [adv[s.prompt_index, s.group_index] for s in sequences]
        parity = attention_parity_length(self.model_config)
        packed = pack_sequences(sequences, seq_adv, row_length_candidates(longest),
                                parity_length=parity)
        length = int(_allgather(np.asarray(packed["tokens"].shape[1])).max())
        if packed["tokens"].shape[1] != length:  # another host chose longer rows
            packed = pack_sequences(sequences, seq_adv, (length,), parity_length=parity)
        sizes = [len(packed["tokens"]), int(packed["loss_mask"].sum(axis=1).max(initial=1))]
        rows, trained = _allgather(np.asarray(sizes)).reshape(-1, 2).max(0)
        multiple = self.rules.batch_size_multiple * self.config.rl.microbatches
        local_multiple = max(1, multiple // jax.process_count())
        rows = -(-bucket(int(rows), 1) // local_multiple) * local_multiple
        return build_batch(packed, rows=rows, positions_width=bucket(int(trained)),
                           microbatches=self.config.rl.microbatches)

    def quick_eval(self, eval_tasks) -> dict:
        """Agreement on a few held-out tasks with greedy dialogue (the policy in every seat)."""
        engine = NegotiationEngine(negotiation_config(self.config.rollout, greedy=True),
                                   self.model_config, self.policy.tokenizer, judge=self.judge,
                                   rules=self.local_rules)
        policy = self._policy_params()
        rollout = run_rollouts(engine, eval_tasks, group_size=1, policy=policy, opponent=policy,
                               trainable_seats=(0,), seed=self.config.seed, mode="eval")
        return {"eval_agreement_rate": float(np.mean(rollout.agreed)),
                "eval_mean_rounds": float(np.mean(rollout.rounds))}

    # -------------------------------------------------------------- the run
    def run(self) -> None:
        config = self.config
        total = config.train.steps
        if self.main:
            os.makedirs(self.workdir, exist_ok=True)
        resumed = self.restore()
        if resumed:
            print(f"resuming from checkpoint step {self.step} in {self.workdir}", flush=True)
        log = MetricsLogger(self.workdir, total_steps=total, start_step=self.step,
                            enabled=self.main, log_every=config.train.log_every,
                            wandb_project=config.wandb.project if config.wandb.enabled else None,
                            run_config=config.to_dict())
        eval_tasks = load_tasks("eval")[:config.train.quick_eval_tasks]
        self.checkpointer.install_sigterm_handler()
        stopped = False
        try:
            while self.step < total:
                step = self.step + 1
                row = self.train_step(step, log)
                if config.train.eval_every and step % config.train.eval_every == 0 and eval_tasks:
                    row.update(self.quick_eval(eval_tasks))
                self.step = step
                log.log(step, row)
                if self.checkpointer.should_save(step, last=step == total):
                    self.save()
                if self.checkpointer.stop_requested:
                    stopped = True
                    break
            self.checkpointer.wait()
        finally:
            self.checkpointer.close()
            log.close()
        if stopped:
            print(f"SIGTERM: saved checkpoint {self.step} in "
                  f"{self.checkpointer.directory}; rerun the same command to resume", flush=True)
            return
        self.finish()

    def finish(self) -> None:
        """Export the policy (LoRA merged), transcripts.html and the report; print where."""
        params = _to_host(combine(self.state["trainable"], self.local_frozen))
        if not self.main:
            return
        config = self.model_config
        if "lora" in params["layers"]:
            params = lora.merge(params, config)
            config = config.replace(lora_scale=1.0)
        export_dir = os.path.join(self.workdir, EXPORT_DIR)
        negojax.export_hf(Model(config, params, self.policy.tokenizer, self.policy.source_dir),
                          export_dir)
        written = {"checkpoints": self.checkpointer.directory, "export": export_dir,
                   "metrics": os.path.join(self.workdir, "metrics.jsonl"),
                   "transcripts": os.path.join(self.workdir, "transcripts.jsonl"),
                   "tensorboard": os.path.join(self.workdir, "tensorboard")}
        written["transcripts_html"] = write_transcripts_html(self.workdir)
        written["report"] = write_training_report(self.workdir)
        print("wrote:\n" + "\n".join(f"  {k:17s} {v}" for k, v in written.items()), flush=True)


def write_transcripts_html(workdir: str) -> str:
    """transcripts.html from transcripts.jsonl with the negotiation engine's viewer."""
    from negojax.negotiation import view
    return view.write_html(workdir)


def write_training_report(workdir: str) -> str:
    from negojax.eval.report import EVAL_RESULTS_FILE, write_report
    results_path = os.path.join(workdir, EVAL_RESULTS_FILE)
    results = {}
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f)
    return write_report(workdir, metrics_jsonl=os.path.join(workdir, "metrics.jsonl"),
                        eval_results=results,
                        transcripts_jsonl=os.path.join(workdir, "transcripts.jsonl"))


def train(config, mesh_sizes: dict) -> None:
    Trainer(config, mesh_sizes).run()

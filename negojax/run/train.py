"""The GRPO self-play loop: rollout, score, advantages, batch, update, log, checkpoint.

Everything random derives from (seed, step, process), and a checkpoint carries the train state,
the opponent snapshots (with a league's statistics) and the task sampler's position, so a
restarted run continues exactly where the interrupted one stopped. Multi-process runs train on
one global mesh; each process rolls out its own prompts on a mesh of its local devices, with
the current trainable params gathered to it.
"""
from __future__ import annotations

import contextlib
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np

from negojax import jsonl, storage
from negojax.api import Model
from negojax.negotiation import derived_seed, view
from negojax.negotiation.external_seats import OpponentFailing
from negojax.parallel.multihost import allgather, host_local_to_global, is_main_process, to_host
from negojax.rewards import compose_rewards, seat_rewards
from negojax.rl import zero_advantage_fraction
from negojax.rl.credit import (CREDITS, advantages_by_turn, groups_with_signal,
                                token_advantages)
from negojax.rl.packing import train_batch
from negojax.rl.train_step import combine, init_train_state, make_train_step
from negojax.run import artifacts
from negojax.run.build import Training
from negojax.run.config import ConfigError, RunStopped
from negojax.run.metrics import METRICS_FILE, MetricsLogger

# What an optimizer step reports (NaN on a step whose every group lacked signal: no update).
UPDATE_METRICS = ("kl", "clip_fraction", "entropy", "grad_norm", "loss", "lr")


def _means(outcomes: dict[str, list[float]]) -> dict[str, float]:
    """Each environment metric's mean over this process's dialogues where it applies, gathered
    over every host (NaN where it applied to none)."""
    out = {}
    for name, values in outcomes.items():
        values = allgather(np.asarray(values, np.float64)).reshape(-1)
        values = values[np.isfinite(values)]
        out[name] = float(values.mean()) if values.size else float("nan")
    return out


def _seat_rewards(dialogues: list[dict], rewards: np.ndarray, valid: np.ndarray) -> dict:
    """reward_seat{s}: the mean reward of seat s (the dialogue's, or the seat's own [P, G,
    seats] under reward.mode own or mixed) over the dialogues where the policy trained seat s,
    over every host, when the policy trains more than one seat across the step."""
    seats = int(allgather(np.asarray(max(len(d["personas"]) for d in dialogues))).max())
    sums = np.zeros((seats, 2))
    per_dialogue = rewards.reshape(len(dialogues), -1)
    for d, r, ok in zip(dialogues, per_dialogue, valid.reshape(-1)):
        for seat in d["policy_seats"]:
            sums[seat] += (r[seat if r.size > 1 else 0], 1.0) if ok else (0.0, 0.0)
    trained = np.asarray([[any(seat in d["policy_seats"] for d in dialogues)]
                          for seat in range(seats)], np.float64)
    sums, trained = allgather(sums).reshape(-1, seats, 2).sum(0), \
        allgather(trained).reshape(-1, seats).max(0)
    if trained.sum() < 2:
        return {}
    return {f"reward_seat{s}": float(sums[s, 0] / sums[s, 1]) if sums[s, 1] else float("nan")
            for s in range(seats) if trained[s]}


def _with_advantages(record: dict, by_turn: dict[int, float]) -> dict:
    """The transcript record with each trained turn's advantage (and the final solution's,
    whose turn index is the turn count, when it was trained)."""
    turns = [{**t, "advantage": by_turn[i]} if i in by_turn else t
             for i, t in enumerate(record["turns"])]
    final = by_turn.get(len(turns))
    return {**record, "turns": turns,
            **({"final_solution_advantage": final} if final is not None else {})}


def by_party_count(tasks, agreed, rewards=None, valid=None, gather=allgather) -> dict:
    """agreement_rate_{n}p, and with rewards reward_mean_{n}p over the scored samples, for each
    party count n among the tasks (agreed and rewards are [tasks, G]), over every host. Given
    also when all tasks have one count, so each count's curve has a point at every step that
    holds that count."""
    parties = np.asarray([len(t.personas) for t in tasks])[:, None]
    parties = gather(np.broadcast_to(parties, np.shape(agreed))).reshape(-1)
    agreed = gather(np.asarray(agreed)).reshape(-1)
    if rewards is not None:
        scored = gather(np.asarray(valid)).reshape(-1).astype(bool)
        rewards = gather(np.asarray(rewards)).reshape(-1)
    out = {}
    for n in sorted(set(parties.tolist())):
        here = parties == n
        out[f"agreement_rate_{n}p"] = float(agreed[here].mean())
        if rewards is not None:
            kept = rewards[here & scored]
            out[f"reward_mean_{n}p"] = float(kept.mean()) if kept.size else float("nan")
    return out


class JudgeFailing(RunStopped):
    """A step's judge failed too often to give rewards worth training on."""


class Interrupted(RunStopped):
    """A SIGTERM or SIGINT during the export, where no step boundary is left to stop at; the run
    exits as that signal's stop does (128 + its number)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_status = 128 + signum


@contextlib.contextmanager
def _signals_interrupt(step: int):
    """SIGTERM and SIGINT raise Interrupted while the export runs, so that it cleans up what it
    began and the workdir lock is released: checkpoint `step` is kept, a rerun exports."""
    def interrupt(signum, frame):
        del frame
        raise Interrupted(f"interrupted during the export; checkpoint {step} is kept; rerun the "
                          "same command to export", signum)
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: a handler not set from Python, which stays replaced
                signal.signal(signum, handler)


class Trainer:
    def __init__(self, run: Training):
        self.run = run
        self.main = is_main_process()
        self.state = init_train_state(run.trainable, run.frozen, run.hparams, run.rules)
        self.step_fn = make_train_step(run.hparams, run.model_config, run.rules, self.state)
        self.step = 0

    # -------------------------------------------------------------- params for rollouts
    def _local(self, tree):
        """A copy of the trainable params on this process's devices (survives donation)."""
        if jax.process_count() == 1:
            return jax.tree.map(jnp.copy, tree)
        # Replicated over the local devices: fine for LoRA adapters and small models; a large
        # full fine-tune would shard these by their logical axes instead.
        replicated = self.run.local_rules.replicated()
        return jax.tree.map(lambda x: jax.device_put(x, replicated), to_host(tree))

    def _policy_params(self):
        trainable = self.state["trainable"] if jax.process_count() == 1 \
            else self._local(self.state["trainable"])
        return combine(trainable, self.run.frozen)

    # -------------------------------------------------------------- checkpoints
    def _checkpoint_tree(self) -> dict:
        s = self.state
        return {"trainable": s["trainable"], "opt_state": s["opt_state"], "step": s["step"],
                "skipped_updates": s["skipped_updates"],
                "opponents": {str(i): o for i, o in enumerate(self.run.opponents.snapshots)}}

    def _abstract_tree(self, meta: dict) -> dict:
        def abstract(x, sharding=None):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or x.sharding)
        tree = jax.tree.map(abstract, {k: v for k, v in self._checkpoint_tree().items()
                                       if k != "opponents"})
        local = None if jax.process_count() == 1 else self.run.local_rules.replicated()
        opponent = jax.tree.map(lambda x: abstract(x, local), self.state["trainable"])
        tree["opponents"] = {str(i): opponent for i in range(int(meta["num_opponents"]))}
        return tree

    def save(self) -> None:
        sampler = self.run.sampler.state()
        positions = allgather(np.asarray([sampler["epoch"], sampler["position"]], np.int64))
        meta = {"step": self.step, "num_opponents": len(self.run.opponents.snapshots),
                "opponents": self.run.opponents.state(),
                "sampler": sampler, "sampler_positions": positions.reshape(-1, 2).tolist(),
                "resume_settings": self.run.resume_settings}
        self.run.checkpointer.save(self.step, self._checkpoint_tree(), meta)

    def restore(self) -> bool:
        found = self.run.checkpointer.restore_latest(self._abstract_tree)
        if found is None:
            return False
        step, tree, meta = found
        self.state = {**self.state, **{k: tree[k] for k in ("trainable", "opt_state", "step",
                                                            "skipped_updates")}}
        self.run.opponents.restore([tree["opponents"][str(i)]
                                    for i in range(meta["num_opponents"])], meta.get("opponents"))
        epoch, position = meta["sampler_positions"][jax.process_index()]
        self.run.sampler.restore({**self.run.sampler.state(), "epoch": epoch,
                                  "position": position})
        self.step = step
        return True

    # -------------------------------------------------------------- one step
    def train_step(self, step: int, phase=lambda text: None) -> tuple[dict, list[dict]]:
        """One GRPO step: (its metrics row, its transcript records); `phase(text)` hears what it
        is doing."""
        run, G = self.run, self.run.group_size
        tasks = run.sampler.next_batch(run.prompts_per_host + run.oversample_per_host)
        start = time.perf_counter()
        judged_before = run.judge.counts()
        policy = self._policy_params()
        if run.judge_follows_policy:
            run.judge.follow(policy, run.model_config)
        snapshot = run.opponents.for_step(step, lambda: self._local(self.state["trainable"]))
        opponent = (policy if snapshot is None else snapshot if run.opponents.mode == "model"
                    else combine(snapshot, run.frozen))
        rollout = run.engine.rollout_tasks(
            tasks, group_size=G, policy=policy, opponent=opponent,
            policy_seats=run.policy_seats, seed=derived_seed(run.seed, step, jax.process_index()),
            mode="train", progress=phase)
        time_rollout = time.perf_counter() - start - rollout.stats["time_agreement_s"]

        start = time.perf_counter()
        env = run.environment
        if env.judged:
            phase(f"judge: {env.reward_name.upper()} scores of "
                  f"{sum(s is not None for s in rollout.final_solutions)} final solutions")
        scores, failures = env.score(run.judge, tasks, rollout, G)
        time_judge = time.perf_counter() - start + rollout.stats["time_agreement_s"]
        judge_row = self._judge_health(step, run.judge.counts() - judged_before)
        overlong = np.asarray([sum(t["hit_token_cap"] for t in d["turns"])
                               for d in rollout.dialogues], np.float64).reshape(-1, G)
        rewards, valid, parts = compose_rewards(scores, rollout.agreed,
                                                fallback=run.reward_fallback,
                                                components=run.reward_components,
                                                dialogue_stats={"overlong_turns": overlong},
                                                name=env.reward_name)
        dialogue_tasks = [tasks[k // G] for k in range(len(rollout.dialogues))]
        outcomes = env.metrics(dialogue_tasks, rollout.dialogues)
        # What each seat is paid: the dialogue's reward, or [P, G, seats] with the seat's own.
        paid = rewards if run.reward_mode == "collective" else seat_rewards(
            rewards, env.seat_utilities(dialogue_tasks, rollout.dialogues).reshape(
                len(tasks), G, -1), valid, mode=run.reward_mode, prosocial=run.prosocial)
        potentials = (env.potentials(dialogue_tasks, rollout.dialogues)
                      if CREDITS.get(run.credit).potentials else None)
        token_adv = token_advantages(run.credit, run.advantage, paid, valid,
                                     rollout.sequences, rollout.dialogues, potentials)
        signal = groups_with_signal(token_adv, rollout.sequences, len(tasks))
        trained = self._trained_groups(signal)
        kept = [k for k, s in enumerate(rollout.sequences) if trained[s.prompt_index]]

        groups = allgather(np.asarray([len(tasks), int((~signal).sum()), int(trained.sum())]))
        groups = groups.reshape(-1, 3).sum(0)

        start = time.perf_counter()
        if groups[2]:
            phase(f"update ({len(kept)} sequences, {run.hparams.num_microbatches} microbatches)")
            metrics = self._update([rollout.sequences[k] for k in kept],
                                   [token_adv[k] for k in kept])
        else:  # no group has a nonzero advantage: nothing to learn, no optimizer step
            metrics = {**{k: float("nan") for k in UPDATE_METRICS}, "tokens": 0,
                       "skipped_updates": int(self.state["skipped_updates"])}
        time_update = time.perf_counter() - start

        # Reward statistics over the samples that count: a dropped sample has no reward.
        scored = allgather(valid).reshape(-1).astype(bool)
        all_rewards = allgather(rewards).reshape(-1)[scored]
        if not all_rewards.size:
            all_rewards = np.full(1, np.nan)
        generated = float(allgather(np.asarray(rollout.stats["generated_tokens"])).sum())
        row = {
            "reward_mean": float(all_rewards.mean()), "reward_std": float(all_rewards.std()),
            "reward_min": float(all_rewards.min()), "reward_max": float(all_rewards.max()),
            **judge_row, "samples_dropped": int((~scored).sum()),
            "agreement_rate": float(allgather(rollout.agreed).mean()),
            "mean_rounds": float(allgather(rollout.rounds).mean()),
            **by_party_count(tasks, rollout.agreed, rewards, valid),
            **{k: float(metrics[k]) for k in UPDATE_METRICS},
            "skipped_updates": int(metrics["skipped_updates"]),
            "rollout_tokens_per_s": generated / max(time_rollout, 1e-9),
            "train_tokens_per_s": float(metrics["tokens"]) / max(time_update, 1e-9),
            "time_rollout_s": time_rollout, "time_judge_s": time_judge,
            "time_update_s": time_update,
            "zero_advantage_fraction": float(np.mean(allgather(
                np.asarray(zero_advantage_fraction(rewards, valid))))),
            "groups_sampled": int(groups[0]), "groups_without_signal": int(groups[1]),
            "groups_trained": int(groups[2]),
            **_seat_rewards(rollout.dialogues, paid, valid),
            **_means(outcomes),
        }
        row.update(run.opponents.record(row["reward_mean"]))
        records = []
        credited = advantages_by_turn(token_adv, rollout.sequences)
        for k, record in enumerate(rollout.dialogues):
            p, g = divmod(k, G)
            record = _with_advantages(record, credited.get((p, g), {}))
            components = {n: float(v[p, g]) for n, v in parts.items()}
            if failures[k] is not None:  # missing, with why: never a made-up 0
                components[env.reward_name] = None
                record = {**record, f"{env.reward_name}_failure": failures[k]}
            if outcomes:
                record = {**record, "outcome": {n: v[k] for n, v in outcomes.items()}}
            if paid is not rewards:
                record = {**record, "seat_rewards": [float(r) for r in paid[p, g]]}
            records.append({"step": step, **record, "reward": float(rewards[p, g]) if valid[p, g]
                            else None, "reward_components": components})
        return row, records

    def _trained_groups(self, signal: np.ndarray) -> np.ndarray:
        """bool [P]: the groups this host's update trains. Every group by default; with
        rl.skip_zero_advantage_groups only those with signal, the first prompts_per_step of
        them in sampled order (the oversampled extra prompts fill in for groups without)."""
        if not self.run.skip_zero_advantage_groups:
            return np.ones_like(signal)
        return signal & (np.cumsum(signal) <= self.run.prompts_per_host)

    def _update(self, sequences, token_adv) -> dict:
        run = self.run
        batch = train_batch(sequences, token_adv, run.model_config,
                            rows_multiple=run.rules.batch_size_multiple
                            * run.hparams.num_microbatches,
                            microbatches=run.hparams.num_microbatches,
                            hosts=jax.process_count(), agree=allgather)
        self.state, metrics = self.step_fn(self.state, host_local_to_global(batch, run.rules))
        return jax.device_get(metrics)

    def _judge_health(self, step: int, judged) -> dict:
        """This step's judge calls and failures by kind (every host's calls and failures, the
        kinds of this process); above the allowed failure rate the run stops before training
        on made-up rewards."""
        calls = judged.pop("calls", 0)
        calls, failures = allgather(np.asarray([calls, sum(judged.values())])).reshape(-1, 2).sum(0)
        row = {"judge_calls": int(calls), "judge_failures": int(failures),
               **{f"judge_failures_{kind}": n for kind, n in sorted(judged.items())}}
        if calls and failures / calls > self.run.max_judge_failure_rate:
            kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(judged.items()))
            raise JudgeFailing(
                f"stopped at step {step}: the judge failed {failures} of its {calls} calls "
                f"({kinds}), above judge.max_failure_rate={self.run.max_judge_failure_rate}; "
                "nothing was trained on this step; fix the judge, then rerun to resume")
        return row

    def quick_eval(self) -> dict:
        """Agreement on a few held-out tasks with greedy dialogue (the policy in every seat)."""
        policy = self._policy_params()
        rollout = self.run.eval_engine.rollout_tasks(
            self.run.eval_tasks, group_size=1, policy=policy, opponent=policy,
            seed=self.run.seed, mode="eval")
        outcomes = self.run.environment.metrics(self.run.eval_tasks, rollout.dialogues)
        return {"eval_agreement_rate": float(np.mean(rollout.agreed)),
                "eval_mean_rounds": float(np.mean(rollout.rounds)),
                **{f"eval_{k}": v for k, v in by_party_count(
                    self.run.eval_tasks, rollout.agreed, gather=np.asarray).items()},
                **{f"eval_{k}": v for k, v in _means(outcomes).items()}}

    # -------------------------------------------------------------- the run
    def _logs_since_checkpoint(self, logs: tuple[str, ...], resumed: bool) -> None:
        """Cut the logs back to the restored step. Logs without any checkpoint (the first save
        failed: a full disk, say) describe steps never saved: set aside, and the run starts
        fresh. Beside damaged checkpoints they may be all that is left of a run: refused."""
        run = self.run
        if not resumed and any(next(iter(jsonl.Records(p, strict=False)), None) for p in logs):
            if run.checkpointer.holds_any():
                raise ConfigError(f"config.workdir: {run.workdir} holds the metrics of an earlier "
                                  "run but no checkpoint that restores; pass a new "
                                  "--config.workdir")
            if self.main:
                asides = [jsonl.copy_aside(p, "unsaved") for p in logs if storage.exists(p)]
                for path in logs:
                    storage.remove(path)
                print(f"warning: {run.workdir} holds logs of steps no checkpoint saved; moved "
                      f"aside to {', '.join(asides)}; starting fresh", flush=True)
            return
        if self.main:
            for path in logs:  # what a crash left past the checkpoint is redone
                jsonl.keep_through_step(path, self.step)

    def train(self) -> int:
        """Train to the last step and finish the run (0), or stop at a SIGTERM or SIGINT with a
        checkpoint and no export (that signal's number). The checkpointer is closed on every way
        out, so no orbax thread is left to fail at exit."""
        try:
            return self._train()
        finally:
            self.run.checkpointer.close()

    def _train(self) -> int:
        run, checkpointer = self.run, self.run.checkpointer
        if self.main:
            storage.makedirs(run.workdir)
        resumed = self.restore()
        if resumed:
            print(f"resuming from checkpoint step {self.step} in {run.workdir}", flush=True)
        transcripts = storage.join(run.workdir, view.TRANSCRIPTS_FILE)
        self._logs_since_checkpoint((storage.join(run.workdir, METRICS_FILE), transcripts),
                                    resumed)
        log = MetricsLogger(run.workdir, total_steps=run.steps, start_step=self.step,
                            enabled=self.main, log_every=run.log_every,
                            wandb_project=run.wandb_project, run_config=run.run_config)
        transcript_log = jsonl.Writer(transcripts) if self.main else None

        def checkpoint():
            if self.main:  # the logs in storage reach at least as far as the checkpoint
                log.flush()
                transcript_log.flush()
            self.save()

        checkpointer.install_signal_handlers()
        # Report the starting step, so that a SIGTERM during the first step stops right after
        # it (JAX's sync picks the last step reported + 1); that step is checkpointed already, or
        # nothing is trained yet, so a preemption landing on it needs no save.
        stopped = checkpointer.reached_preemption(self.step)
        skips, skipped = 0, int(self.state["skipped_updates"])
        try:
            while not stopped and self.step < run.steps:
                step = self.step + 1
                try:
                    row, records = self.train_step(step, lambda text: log.phase(step, text))
                except (JudgeFailing, OpponentFailing):
                    if self.step and self.step not in checkpointer.steps():
                        checkpoint()  # the last trained state, so the rerun resumes there
                    raise
                if run.eval_every and step % run.eval_every == 0 and run.eval_tasks:
                    log.phase(step, "quick eval")
                    row.update(self.quick_eval())
                self.step = step
                if self.main:
                    transcript_log.write(records)
                log.log(step, row)
                skips = skips + 1 if row["skipped_updates"] > skipped else 0
                skipped = row["skipped_updates"]
                stopped = checkpointer.reached_preemption(step)
                if stopped or checkpointer.should_save(step, last=step == run.steps) \
                        or skips >= run.max_consecutive_skips:
                    log.phase(step, "checkpoint")
                    checkpoint()
                if skips >= run.max_consecutive_skips:
                    raise RunStopped(
                        f"stopped at step {step}: its last {skips} updates were not finite "
                        f"(loss {row['loss']}, grad_norm {row['grad_norm']}) and were skipped; "
                        f"checkpoint {step} in {checkpointer.directory} holds the last good "
                        "weights; lower optim.lr or optim.max_grad_norm, then rerun to resume")
            checkpointer.wait()
        finally:
            log.close()
            if transcript_log is not None:
                transcript_log.close()
        if stopped:
            signum = checkpointer.stop_signal
            print(f"{signal.Signals(signum).name}: saved checkpoint {self.step} in "
                  f"{checkpointer.directory}; rerun the same command to resume", flush=True)
            return signum
        with _signals_interrupt(self.step):
            params = to_host(combine(self.state["trainable"], run.frozen))
            if self.main:
                artifacts.finish_training(run.workdir, Model(run.model_config, params,
                                                             run.policy.tokenizer,
                                                             run.policy.source_dir),
                                          checkpointer.directory, run.training_info)
        return 0

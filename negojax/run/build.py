"""The run's objects from its config: the only code besides `negojax.main` that reads the
ConfigDict. Training (`build_training`), evaluation (`build_evaluation`) and chat
(`load_policy`) each take what they need from here, and everything they hand on is a plain
object: a model, a mesh's rules, a judge, an engine, hyper-parameters.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
from typing import Optional

import jax

import negojax
from negojax import storage
from negojax.api import Model
from negojax.data import TaskSampler, Task, load_tasks
from negojax.models import lora
from negojax.models.config import ModelConfig
from negojax.negotiation import (NegotiationConfig, NegotiationEngine, Opponents,
                                 SingleAgentEngine, as_config)
from negojax.negotiation.external_seats import ExternalSeat, HttpSeat, LocalSeat
from negojax.parallel import LogicalRules, make_mesh
from negojax.rewards.http_judge import ChatEndpoint
from negojax.rl import TrainHParams
from negojax.rl.train_step import tree_axes
from negojax.run.judge_kinds import JUDGES

CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"
# Beside an export: which setting trained it, how long, from which base (evaluation labels by it).
TRAINING_INFO_FILE = "training.json"
JUDGE_CACHE_DIR = "judge_cache"
# What a checkpoint's arrays and its run's random streams depend on, what its export's
# training.json says trained it, and what a sample means (who plays the other seats, which seats
# train, which tokens get which advantage, how the reward is made: the welfare, the judge that
# scores, the fallback for a failed score and the shaping components): a resume must keep them.
# The opponent mode also shapes the checkpoint's opponent state: a league restored as frozen and
# resumed as league again fails to draw. Not here: the judge's endpoint (base_url, and the
# ensemble's members, which hold theirs), which may move while the judge stays the same.
RESUME_KEYS = ("model.path", "model.param_dtype", "model.random_init", "model.overrides",
               "lora.rank", "lora.alpha", "lora.targets", "lora.base_dtype", "seed",
               "rollout.setting", "env.name", "env.parties", "env.train_tasks", "env.seed",
               "data.dir", "rollout.opponent", "rollout.policy_seats", "rl.credit",
               "env.welfare", "judge.kind", "judge.path", "judge.model", "reward.fallback",
               "reward.components", "reward.mode", "reward.prosocial")


# ------------------------------------------------------------------------------ model and mesh


def _load(key: str, path: str, **options) -> Model:
    """negojax.load_model; a damaged or unsupported model file is a ConfigError naming `key`
    (the loaders' messages already name the file and the problem, in one line)."""
    from negojax.run.config import ConfigError
    try:
        return negojax.load_model(path, **options)
    except (ValueError, OSError) as error:
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"config.{key}: {text}") from None


def load_policy(model_cfg, rules: Optional[LogicalRules] = None, key: str = "model.path"
                ) -> Model:
    """The configured model (`model.overrides` re-shape a randomly initialised architecture
    while keeping a checkpoint's tokenizer)."""
    return _load(key, model_cfg.path, dtype=model_cfg.dtype, param_dtype=model_cfg.param_dtype,
                 random_init=model_cfg.random_init, rules=rules,
                 overrides=dict(model_cfg.overrides) or None,
                 tokenizer=model_cfg.tokenizer or None,
                 chat_template=model_cfg.chat_template or None, thinking=model_cfg.thinking)


def opponent_endpoint(block) -> ChatEndpoint:
    """rollout.opponent_model's endpoint (kind http)."""
    return ChatEndpoint(block.base_url, block.model, api_key_env=block.api_key_env,
                        timeout_s=block.timeout_s, max_retries=block.max_retries,
                        concurrency=block.concurrency, max_reply_bytes=block.max_reply_bytes,
                        role="opponent")


def opponent_seat(block, model_cfg, rules: LogicalRules, tokenizer) -> ExternalSeat:
    """rollout.opponent_model's seat: a model of its own (its own tokenizer and architecture,
    in the policy's dtypes) or an OpenAI-compatible endpoint, whose replies are cut in the
    policy's `tokenizer`."""
    if block.kind == "http":
        return HttpSeat(opponent_endpoint(block), tokenizer)
    return LocalSeat(_load("rollout.opponent_model.path", block.path, dtype=model_cfg.dtype,
                           param_dtype=model_cfg.param_dtype, rules=rules))


def global_rules(mesh_sizes: dict) -> LogicalRules:
    return LogicalRules(make_mesh(**mesh_sizes))


def local_rules(mesh_sizes: dict) -> LogicalRules:
    """Rules over this process's devices, for rollouts and the judge; the global mesh itself
    when there is one process."""
    if jax.process_count() == 1:
        return global_rules(mesh_sizes)
    devices = jax.local_devices()
    tensor = max(t for t in range(1, len(devices) + 1)
                 if len(devices) % t == 0 and t <= mesh_sizes["tensor"])
    return LogicalRules(make_mesh(data=len(devices) // tensor, fsdp=1, tensor=tensor,
                                  devices=devices))


# ------------------------------------------------------------------------------ judges


def http_judge(entry: dict, fallback: str, cache_dir: str | None = None):
    """An HttpJudge from one judge's fields (negojax.run.config.JUDGE_FIELDS)."""
    from negojax.rewards import HttpJudge
    return HttpJudge(entry["base_url"], entry["model"], api_key_env=entry["api_key_env"],
                     timeout_s=entry["timeout_s"], max_retries=entry["max_retries"],
                     concurrency=entry["concurrency"], max_reply_bytes=entry["max_reply_bytes"],
                     cache_dir=cache_dir if entry["cache"] else None, fallback=fallback)


def uses_opponent_model(config) -> bool:
    """Whether training seats rollout.opponent_model (a single-agent run seats no opponent)."""
    r = config.rollout
    return r.opponent == "model" and r.setting != "single_agent"


def check_judge(config) -> None:
    """Every remote judge, and an opponent model behind an endpoint, must answer before the run
    starts (a local model is loaded later)."""
    if config.mode == "chat":
        return
    from negojax.rewards import JudgeUnreachable
    from negojax.run.config import ConfigError, judge_entries
    endpoints = [(key, http_judge(entry, config.reward.fallback))
                 for key, entry in judge_entries(config) if entry["kind"] == "http"]
    if (config.mode == "train" and uses_opponent_model(config)
            and config.rollout.opponent_model.kind == "http"):
        endpoints.append(("rollout.opponent_model", opponent_endpoint(
            config.rollout.opponent_model)))
    for key, endpoint in endpoints:
        try:
            endpoint.check_reachable()
        except JudgeUnreachable as error:
            raise ConfigError(f"config.{key}.base_url: {error}") from None


def endpoint_judge(config, key: str, entry: dict, policy: Model, cache_dir: str):
    """judge.kind "http": a judge behind an OpenAI-compatible endpoint."""
    del key, policy
    return http_judge(entry, config.reward.fallback, cache_dir)


def local_judge(config, key: str, entry: dict, policy: Model, cache_dir: str):
    """judge.kind "local": a model negojax loads, in-process; the policy's own weights when the
    path names them."""
    del cache_dir
    from negojax.rewards import LocalJudge
    from negojax.run.config import POLICY_JUDGES
    same_weights = entry["path"] == config.model.path and not (
        config.model.random_init or config.model.overrides)
    if entry["path"] in POLICY_JUDGES or same_weights:
        return LocalJudge(policy)
    return LocalJudge(_load(f"{key}.path", entry["path"], dtype=config.model.dtype,
                            rules=policy.rules), rules=policy.rules)


def make_judge(config, policy: Model):
    """The configured judge, or the ensemble of `judge.ensemble`'s members; a local judge of
    path "policy" or "self", or of the policy's own checkpoint, is `policy`'s weights (under LoRA
    its frozen base), not a second copy; the trainer points a "self" judge at the live policy
    every step."""
    from negojax.rewards import JudgeEnsemble
    from negojax.run.config import judge_entries
    cache = storage.join(config.workdir, JUDGE_CACHE_DIR)
    entries = judge_entries(config)
    if len(entries) == 1:
        key, entry = entries[0]
        return JUDGES.get(entry["kind"])(config, key, entry, policy, cache)
    # A cache of its own per member: each member's replies are its own.
    return JudgeEnsemble([JUDGES.get(entry["kind"])(config, key, entry, policy,
                                                    storage.join(cache, str(i)))
                          for i, (key, entry) in enumerate(entries)],
                         vote=config.judge.ensemble_vote, fallback=config.reward.fallback)


# ------------------------------------------------------------------------------ components


def negotiation_config(rollout_cfg, *, greedy: bool = False) -> NegotiationConfig:
    """The engine's settings from the `rollout` section (context_turns 0: the full history)."""
    settings = as_config({**rollout_cfg.to_dict(), "context_turns": rollout_cfg.context_turns or None})
    if greedy:
        settings = dataclasses.replace(settings, temperature=0.0, top_p=1.0,
                                       final_temperature=0.0, final_top_p=1.0)
    return settings


def environment(config):
    """The run's environment, its tasks read once: a bad task file, or a split with no tasks, is
    a ConfigError."""
    from negojax.environments import make_environment
    from negojax.environments.base import SPLITS
    from negojax.run.config import ConfigError
    env = make_environment(config)
    key = "data.dir" if config.data.dir else "env.name"
    try:
        for split in SPLITS:
            if not env.tasks(split):  # a loader's own empty-file error names the file
                raise ValueError(f"{config.env.name} has no {split} tasks; its tasks({split!r}) "
                                 "must return at least one")
    except ValueError as error:
        raise ConfigError(f"config.{key}: {error}") from None
    return env


def check_prompts(config, env, policy: Model) -> None:
    """Every task's opening prompt and a first turn fit the policy's context, counted with its
    tokenizer: a longer prompt would pass everything else and run out of memory minutes later."""
    from negojax.data.layouts import layout_of
    from negojax.environments.base import SPLITS, overlong_opening
    from negojax.run.config import ConfigError
    context = policy.config.max_position_embeddings
    reply = config.rollout.max_new_tokens
    for split in SPLITS:
        found = overlong_opening(env, env.tasks(split), policy.tokenizer, context - reply)
        if found is None:
            continue
        task, seat, tokens = found
        if config.data.dir:
            where = storage.join(config.data.dir, layout_of(config.data.dir).split_files[split])
            key, fix = "data.dir", "shorten its dilemma"
        else:
            where, key, fix = f"{config.env.name}'s {split} tasks", "env.name", "shorten it"
        if tokens < context:  # a shorter reply would fit
            fix += " or lower rollout.max_new_tokens"
        raise ConfigError(f"config.{key}: {where}: task {task.id!r} prompts seat {seat} with "
                          f"{tokens} tokens, which with rollout.max_new_tokens={reply} exceed the "
                          f"model's context of {context} positions; {fix}")


def make_engine(config, model_config: ModelConfig, tokenizer, judge, rules, env, *,
                greedy: bool = False) -> NegotiationEngine:
    return NegotiationEngine(negotiation_config(config.rollout, greedy=greedy), model_config,
                             tokenizer, judge=judge, rules=rules, environment=env)


def make_rollout_engine(config, model_config: ModelConfig, tokenizer, judge, rules, env):
    """Training's rollout source, by rollout.setting: negotiation dialogues, or the
    single-agent baseline's answers. Both return a Rollout, which the loop scores, batches
    and trains on alike."""
    if config.rollout.setting == "single_agent":
        return SingleAgentEngine(negotiation_config(config.rollout), model_config, tokenizer,
                                 rules=rules)
    return make_engine(config, model_config, tokenizer, judge, rules, env)


def train_hparams(config) -> TrainHParams:
    """TrainHParams from the keys of `TRAIN_KEYS`; a constant schedule keeps the peak rate, and
    the schedule runs at least one step past the warmup."""
    from negojax.run.config import TRAIN_KEYS, config_value
    values = {field: config_value(config, key) for field, key in TRAIN_KEYS.items()}
    values["total_steps"] = max(config.train.steps, config.optim.warmup_steps + 1)
    if config.optim.schedule == "constant":
        values["final_lr_fraction"] = 1.0
    if values["aggregation"] == "seq_mean_token_sum_norm":
        values["max_len_norm"] = sequence_budget(config.rollout)
    return TrainHParams(**values)


def sequence_budget(rollout_cfg) -> int:
    """The most tokens the policy can sample into one train sequence: one turn with a context
    window; with the full history, its share of the turns (half of them at most, with 2 or
    more seats; max_rounds turns when rounds set the limit); plus the final solution when that is trained on; a single-agent answer is
    one solution. Dr. GRPO's constant normaliser (seq_mean_token_sum_norm)."""
    r = rollout_cfg
    if r.setting == "single_agent":
        return r.final_max_new_tokens
    turns = 1 if r.context_turns else r.max_rounds or -(-r.max_turns // 2)
    return turns * r.max_new_tokens + (r.final_max_new_tokens if r.train_on_final_solution else 0)


def split_params(policy: Model, lora_cfg):
    """(trainable, frozen, model config): full fine-tuning or LoRA adapters over a frozen base.

    The frozen base is laid out on the policy's mesh as the train step wants it, so the step,
    the rollouts and the judge share its one copy."""
    if lora_cfg.rank == 0:
        return policy.params, {}, policy.config
    adapters, config = lora.init_lora(policy.params, policy.config, lora_cfg.rank,
                                      lora_cfg.alpha, tuple(lora_cfg.targets))
    frozen = policy.params
    if lora_cfg.base_dtype != "float32":
        def freeze(params):
            return lora.freeze_base(params, lora_cfg.base_dtype, tuple(lora_cfg.targets))
        from negojax.run.config import ConfigError
        try:
            shapes = jax.eval_shape(freeze, policy.params)
        except ValueError as error:  # a 4-bit format and an odd input dim
            raise ConfigError(f"config.lora.base_dtype: {error}") from None
        shardings = None if policy.rules is None else policy.rules.tree_shardings(
            tree_axes(shapes), shapes)
        frozen = jax.jit(freeze, out_shardings=shardings)(policy.params)
    return {"layers": {"lora": adapters}}, frozen, config


# ------------------------------------------------------------------------------ the runs


@dataclasses.dataclass
class Training:
    """Everything the GRPO loop needs, built from the config."""
    workdir: str
    seed: int
    steps: int
    group_size: int
    prompts_per_host: int
    advantage: str
    credit: str                      # negojax.rl.credit.CREDITS
    skip_zero_advantage_groups: bool
    oversample_per_host: int         # extra prompts rolled out per step on each host
    reward_fallback: str
    reward_components: dict          # {name: coefficient}, the ones switched on
    reward_mode: str                 # negojax.rewards.REWARD_MODES
    prosocial: float                 # the collective reward's weight under reward_mode "mixed"
    eval_every: int
    environment: object              # negojax.environments.Environment: tasks, reward, metrics
    eval_tasks: list[Task]
    max_consecutive_skips: int
    max_judge_failure_rate: float
    log_every: int
    wandb_project: Optional[str]
    run_config: dict
    rules: LogicalRules              # the global mesh: the train step
    local_rules: LogicalRules        # this process's devices: rollouts and the judge
    policy: Model
    judge: object
    trainable: dict
    frozen: dict
    model_config: ModelConfig
    hparams: TrainHParams
    engine: object                   # the rollout source: make_rollout_engine
    eval_engine: NegotiationEngine   # greedy dialogue for the quick evaluation, in any setting
    training_info: dict              # written beside the export (TRAINING_INFO_FILE)
    judge_follows_policy: bool       # judge.path "self": the live policy judges each step
    sampler: TaskSampler
    opponents: Opponents
    policy_seats: str                # negojax.negotiation.POLICY_SEATS
    checkpointer: object             # negojax.checkpoints.TrainCheckpointer
    resume_settings: dict            # RESUME_KEYS' values, saved with every checkpoint


def resume_settings(config) -> dict:
    """RESUME_KEYS' values as JSON would read them back (lists, dicts)."""
    from negojax.run.config import config_value

    def plain(v):
        return v.to_dict() if hasattr(v, "to_dict") else list(v) if isinstance(v, tuple) else v
    return {key: plain(config_value(config, key)) for key in RESUME_KEYS}


def _flags(key: str, saved, now) -> list[str]:
    """--config flags that set `key` back to `saved` as resume_settings wrote it: a dict one flag
    per entry that differs, a list as the tuple literal the config holds, each quoted for a
    shell."""
    if isinstance(saved, dict):
        now = now if isinstance(now, dict) else {}
        return [flag for k, v in saved.items() if now.get(k) != v
                for flag in _flags(f"{key}.{k}", v, now.get(k))]
    text = repr(tuple(saved)) if isinstance(saved, list) else saved
    return [shlex.quote(f"--config.{key}={text}")]


def check_resumable(checkpointer, settings: dict) -> None:
    """A workdir's newest checkpoint must have been written with the same RESUME_KEYS values:
    otherwise one line naming each key that differs and the two ways forward, and nothing is
    touched. Keys a checkpoint predates are not compared."""
    from negojax.run.config import ConfigError
    latest = checkpointer.latest_meta()
    if latest is None:
        return
    step, meta = latest
    saved = meta.get("resume_settings", {})
    differ = [key for key in RESUME_KEYS if key in saved and saved[key] != settings[key]]
    if differ:
        was = ", ".join(f"config.{k}={saved[k]!r} (now {settings[k]!r})" for k in differ)
        flags = " ".join(flag for k in differ for flag in _flags(k, saved[k], settings[k]))
        raise ConfigError(f"config.workdir: its checkpoint {step} in {checkpointer.directory} was "
                          f"written with {was}; resume it with {flags}, or pass a new "
                          "--config.workdir")


def build_training(config, mesh_sizes: dict) -> Training:
    """The run's Training. The environment's tasks are read before the checkpoint manager
    exists; should anything after fail, the manager is closed (its threads would otherwise
    print orbax errors at exit) and the checkpoint folder it made, still empty, removed."""
    from negojax.checkpoints import TrainCheckpointer
    env = environment(config)
    directory = storage.join(config.workdir, CHECKPOINT_DIR)
    made = not storage.exists(directory)
    checkpointer = TrainCheckpointer(directory, save_every=config.train.checkpoint_every,
                                     keep=config.train.keep_checkpoints)
    try:
        return _build_training(config, mesh_sizes, env, checkpointer)
    except BaseException:
        checkpointer.close()
        if made and not storage.is_remote(directory):  # an object store has no folders
            with contextlib.suppress(OSError):  # one holding anything stays
                os.rmdir(directory)
        raise


def _build_training(config, mesh_sizes: dict, env, checkpointer) -> Training:
    t = config.train
    settings = resume_settings(config)
    check_resumable(checkpointer, settings)  # before any model loads
    local = local_rules(mesh_sizes)
    policy = load_policy(config.model, local)  # a checkpoint, so a tokenizer: see validation
    check_prompts(config, env, policy)
    trainable, frozen, model_config = split_params(policy, config.lora)
    if config.lora.rank:
        # The full-precision base is released: policy, judge, reference and opponent all read
        # the frozen one (a local judge of path "policy" judges with the base weights).
        policy = dataclasses.replace(policy, params=frozen)
    judge = make_judge(config, policy)
    r = config.rollout
    return Training(
        workdir=config.workdir, seed=config.seed, steps=t.steps, group_size=r.group_size,
        prompts_per_host=r.prompts_per_step // jax.process_count(), advantage=config.rl.advantage,
        credit=config.rl.credit, skip_zero_advantage_groups=config.rl.skip_zero_advantage_groups,
        oversample_per_host=config.rl.oversample_prompts // jax.process_count(),
        reward_fallback=config.reward.fallback,
        reward_components={k: v for k, v in config.reward.components.items() if v},
        reward_mode=config.reward.mode, prosocial=config.reward.prosocial,
        eval_every=t.eval_every, environment=env,
        eval_tasks=env.tasks("eval")[:t.quick_eval_tasks],
        max_consecutive_skips=t.max_consecutive_skips,
        max_judge_failure_rate=config.judge.max_failure_rate,
        log_every=t.log_every,
        wandb_project=config.wandb.project if config.wandb.enabled else None,
        run_config=config.to_dict(), rules=global_rules(mesh_sizes), local_rules=local,
        policy=policy, judge=judge, trainable=trainable, frozen=frozen, model_config=model_config,
        hparams=train_hparams(config),
        engine=make_rollout_engine(config, model_config, policy.tokenizer, judge, local, env),
        eval_engine=make_engine(config, model_config, policy.tokenizer, judge, local, env,
                                greedy=True),
        sampler=TaskSampler(env.tasks("train"), seed=config.seed,
                            process_index=jax.process_index(),
                            process_count=jax.process_count()),
        # A single-agent rollout seats no opponent: "live" keeps no snapshots.
        opponents=Opponents("live" if r.setting == "single_agent" else r.opponent,
                            refresh=r.opponent_refresh, pool_size=r.opponent_pool_size,
                            seed=config.seed,
                            external=(opponent_seat(r.opponent_model, config.model, local,
                                                    policy.tokenizer)
                                      if uses_opponent_model(config) else None)),
        policy_seats="first" if r.setting == "single_agent" else r.policy_seats,
        checkpointer=checkpointer, resume_settings=settings,
        judge_follows_policy=(config.judge.kind == "local" and config.judge.path == "self"
                              and not config.judge.ensemble),
        training_info={"setting": r.setting, "env": config.env.name, "steps": t.steps,
                       "model_path": config.model.path,
                       "judge": config.judge.model if config.judge.kind == "http"
                       else config.judge.path})


@dataclasses.dataclass
class Evaluation:
    """Everything the evaluation suite needs, built from the config: model A (trained) and B
    (the baseline), the judge, and one dialogue engine per decoding."""
    workdir: str
    seed: int
    models: dict                     # {"A": Model, "B": Model}
    paths: dict                      # {"A": path, "B": path}
    trained_by: dict                 # {"A": training info or None (not trained by negojax), "B": ...}
    judge: object
    engines: dict                    # {(name, decoding): NegotiationEngine}
    decodings: tuple
    environment: object              # negojax.environments.Environment
    tasks: list[Task]
    open_ended: list[Task]
    capability_prompts: int
    reasoning_problems: int
    gsm8k_data_dir: Optional[str]
    answer_max_new_tokens: int
    n_resamples: int
    process_similarity: str          # negojax.eval.process.SIMILARITIES
    calibration_samples: int
    calibration: str                 # "second_member" or "reordered" (negojax.eval.calibration)
    opponents: dict                  # {name: ExternalSeat}: whom each model also plays


def _model_paths(config) -> dict:
    """A: eval.trained_path, else the run's export, else model.path; B: eval.baseline_path,
    else model.path."""
    exported = storage.join(config.workdir, EXPORT_DIR)
    trained = config.eval.trained_path or (exported if storage.isfile(
        storage.join(exported, "config.json")) else config.model.path)
    return {"A": trained, "B": config.eval.baseline_path or config.model.path}


def _load_at(config, path: str, rules) -> Model:
    """The configured model, or a checkpoint of its own at `path` with its real weights."""
    model_cfg = config.model.copy_and_resolve_references()
    key = "model.path"
    with model_cfg.unlocked():
        model_cfg.path = path
        if path != config.model.path:
            model_cfg.random_init = False
            model_cfg.overrides = {}
            key = "eval.trained_path" if path == config.eval.trained_path else "eval.baseline_path"
    return load_policy(model_cfg, rules, key)


def trained_by(path: str, key: str) -> Optional[dict]:
    """The training info a negojax export carries beside its weights, or None; a damaged one
    is a ConfigError naming `key`, the config key that points at the model."""
    from negojax.run.config import ConfigError
    info = storage.join(path, TRAINING_INFO_FILE)
    if not storage.isfile(info):
        return None
    try:
        found = json.loads(storage.read_text(info))
    except json.JSONDecodeError as error:
        raise ConfigError(f"config.{key}: {info} is not valid JSON ({error}); rewrite it from "
                          "the run that trained the model, or remove it") from None
    if not isinstance(found, dict) or not {"setting", "steps"} <= set(found):
        raise ConfigError(f"config.{key}: {info} names no setting and steps; rewrite it from "
                          "the run that trained the model, or remove it")
    return found


def build_evaluation(config, mesh_sizes: dict) -> Evaluation:
    e = config.eval
    rules = global_rules(mesh_sizes)
    paths = _model_paths(config)
    infos = {name: trained_by(path, key) for (name, path), key in zip(
        paths.items(), ("eval.trained_path", "eval.baseline_path"))}  # before any model loads
    env = environment(config)
    models = {name: _load_at(config, path, rules) for name, path in paths.items()}
    for model in models.values():  # each with its own tokenizer and context
        check_prompts(config, env, model)
    judge = make_judge(config, models["B"])  # a "policy" judge is the untrained baseline
    engines = {(name, d): make_engine(config, m.config, m.tokenizer, judge, rules, env,
                                      greedy=d == "greedy")
               for name, m in models.items() for d in e.decodings}
    return Evaluation(
        workdir=config.workdir, seed=config.seed, models=models, paths=paths,
        trained_by=infos, judge=judge,
        engines=engines, decodings=tuple(e.decodings), environment=env,
        tasks=env.tasks("eval")[:e.num_tasks],
        open_ended=load_tasks("open_ended")[:e.open_ended_tasks] if env.judged else [],
        capability_prompts=e.capability_prompts, reasoning_problems=e.reasoning_problems,
        gsm8k_data_dir=e.gsm8k_data_dir or None, answer_max_new_tokens=e.answer_max_new_tokens,
        n_resamples=e.n_resamples, process_similarity=e.process_similarity,
        calibration_samples=e.calibration_samples,
        calibration=e.calibration_judge if e.calibration_judge != "auto" else (
            "second_member" if config.judge.ensemble else "reordered"),
        # Model B beside the evaluated model, speaking through its own tokenizer and template.
        opponents={name: LocalSeat(models["B"]) for name in e.opponents})

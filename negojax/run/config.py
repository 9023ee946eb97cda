"""The run configuration: every key with its default (`base_config`) and its validation.

configs/*.py start from `base_config()` and override values; the ConfigDict is locked, so a
misspelt `--config.key` is an error instead of a silently ignored setting. Validation happens in
two phases, both before any model is loaded:
  `validate_static(config)`           keys, enums, ranges and paths (no jax)
  `validate_devices(config, ...)`     batch and host divisibility against the real device layout
and `negojax.run.build.check_judge(config)` asks a remote judge whether it answers.
Every problem is a `ConfigError` whose message is one line naming the key and what to change.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import math
import os

import ml_collections

from negojax import storage
from negojax.errors import ConfigError, RunStopped  # noqa: F401 (the run's errors, named here)
from negojax.eval.process import SIMILARITIES
from negojax.models import lora
from negojax.models.config import DTYPE_NAMES, PRESETS
from negojax.negotiation import OPPONENT_MODES, POLICY_SEATS, SETTINGS, NegotiationConfig
from negojax.rewards import COMPONENTS, FALLBACKS, REWARD_MODES, VOTES, HttpJudge
from negojax.rewards.http_judge import ChatEndpoint
from negojax.rl import METHODS, TrainHParams
from negojax.rl.advantages import ADVANTAGES
from negojax.rl.credit import CREDITS
from negojax.run.judge_kinds import JUDGES
from negojax.tokenization import has_tokenizer

MODES = ("train", "eval", "chat")
OPPONENT_MODEL_KINDS = ("local", "http")
# The fields of one judge: the `judge` block's, and each `judge.ensemble` entry's.
JUDGE_FIELDS = ("kind", "path", "base_url", "model", "api_key_env", "timeout_s", "max_retries",
                "concurrency", "max_reply_bytes", "cache")
# eval.calibration_judge: "auto" is "second_member" with 2 or more ensemble members, else
# "reordered" (the run's judge again, the parties listed in the other order).
CALIBRATION_JUDGES = ("auto", "second_member", "reordered")
EVAL_OPPONENTS = ("base",)
# Local judges that are the policy's own weights: its initial ones, or the live ones.
POLICY_JUDGES = ("policy", "self")
SCHEDULES = ("cosine", "constant")
# TrainHParams field -> the run config key that sets it (its defaults come from the field). Every
# field is here but DERIVED_TRAIN_FIELDS' (tests/run/test_config.py holds the two to that).
TRAIN_KEYS = {
    "learning_rate": "optim.lr", "warmup_steps": "optim.warmup_steps",
    "final_lr_fraction": "optim.final_lr_fraction", "weight_decay": "optim.weight_decay",
    "adam_b1": "optim.adam_b1", "adam_b2": "optim.adam_b2", "adam_eps": "optim.adam_eps",
    "max_grad_norm": "optim.max_grad_norm", "clip_low": "rl.clip_low",
    "clip_high": "rl.clip_high", "dual_clip": "rl.dual_clip",
    "aggregation": "rl.loss_aggregation", "beta": "rl.beta",
    "kl_estimator": "rl.kl_estimator", "num_microbatches": "rl.microbatches",
    "num_inner_updates": "rl.num_inner_updates", "logprob_chunk": "rl.logprob_chunk",
    "remat": "rl.remat",
    "total_steps": "train.steps",
}
# Set from other keys by negojax.run.build.train_hparams: Dr. GRPO's constant normaliser is the
# rollout's token budget.
DERIVED_TRAIN_FIELDS = ("max_len_norm",)
# Keys of the rollout section that are the engine's (NegotiationConfig); the others are the run's.
NEGOTIATION_KEYS = tuple(f.name for f in dataclasses.fields(NegotiationConfig))


def _init_defaults(fn, *names) -> dict:
    parameters = inspect.signature(fn).parameters
    return {name: parameters[name].default for name in names}


def base_config() -> ml_collections.ConfigDict:
    """Every key a run reads, with its default. The defaults of the engine's, the optimizer's,
    LoRA's and the HTTP judge's settings are those of their own dataclasses and signatures
    (the method's); configs/default.py shapes a quick CPU run from them. Unlocked; callers
    lock."""
    c = ml_collections.ConfigDict()
    c.mode = "train"
    c.workdir = "runs/default"
    c.seed = 0
    c.distributed = False
    # Compiled XLA programs persist here across runs (MaxText's jax_cache_dir), so a rerun or a
    # resumed run skips the compiles that took >= 1 s (JAX's threshold): the default config's
    # first step on 2 CPU cores, 164 s with an empty cache, took 155 s on the rerun. "" turns
    # the cache off.
    c.jax_cache_dir = "~/.cache/negojax/jax"
    c.prompt = "What is the capital of France?"  # mode=chat

    c.chat = ml_collections.ConfigDict(dict(max_new_tokens=128))
    # path: "default" (embedded SmolLM2-135M-Instruct), an HF directory, a .gguf file or a preset
    # name (with random_init). overrides: ModelConfig fields replaced before a random init, for
    # tiny test models that keep a real checkpoint's tokenizer. tokenizer: a directory to take
    # the tokenizer from ("": the checkpoint's). chat_template: a .jinja file replacing the
    # checkpoint's ("": its own). thinking: passed to templates as enable_thinking (the method
    # trains with it off).
    c.model = ml_collections.ConfigDict(dict(
        path="default", dtype="float32", param_dtype="float32", random_init=False,
        overrides=ml_collections.ConfigDict(), tokenizer="", chat_template="", thinking=False))
    c.lora = ml_collections.ConfigDict(dict(
        rank=0, alpha=16.0, targets=lora.DEFAULT_TARGETS, base_dtype=lora.BASE_STORAGES[0]))
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    negotiation = dataclasses.asdict(NegotiationConfig())
    negotiation["context_turns"] = negotiation["context_turns"] or 0  # 0: the full history
    # setting: who answers a task. "negotiation" (the method): the policy negotiates with its
    # opponents and writes the final solution; "single_agent" (the paper's baseline): the policy
    # answers alone, every persona's view in its prompt. Orthogonal to what a task is, so an
    # environment interface can offer both settings over its own tasks.
    c.rollout = ml_collections.ConfigDict(dict(
        setting=SETTINGS[0], prompts_per_step=2, group_size=4, **negotiation,
        # opponent: negojax.negotiation.OPPONENT_MODES. frozen, pool and league take a
        # snapshot of the policy every opponent_refresh steps; pool and league keep the last
        # opponent_pool_size, league drawing one by prioritised fictitious self-play (docs/
        # opponents.md).
        opponent="frozen", opponent_refresh=1, opponent_pool_size=4,
        # opponent=model: a fixed model of its own plays the opponent seats, never trained.
        # kind local: path is an HF directory, a .gguf file or "default", with its own
        # tokenizer and architecture; kind http: an OpenAI-compatible endpoint (as judge.*).
        opponent_model=ml_collections.ConfigDict(dict(
            kind="local", path="default", base_url="http://127.0.0.1:8000/v1", model="",
            **_init_defaults(ChatEndpoint.__init__, "api_key_env", "timeout_s", "max_retries",
                             "concurrency", "max_reply_bytes"))),
        # Which seats the policy takes and trains (negojax.negotiation.POLICY_SEATS); the
        # opponent fills the others.
        policy_seats=POLICY_SEATS[0]))
    # The environment (negojax.environments): a built-in name or a user's "pkg.module:Class".
    # welfare, parties, train_tasks, eval_tasks and seed are resource_split's: its collective
    # reward (nash or sum, normalised to [0, 1]), the party counts its games take in turn, the
    # sizes of its disjoint generated splits, and the generator's seed (apart from the run's, so
    # the eval set stays the same across runs).
    c.env = ml_collections.ConfigDict(dict(
        name="deliberation", welfare="nash", parties=(2,), train_tasks=4000, eval_tasks=500,
        seed=0))
    # dir: a folder of the user's own tasks (train.jsonl and eval.jsonl, docs/data.md) for the
    # deliberation environment; "": the shipped scenarios.
    c.data = ml_collections.ConfigDict(dict(dir=""))
    c.judge = ml_collections.ConfigDict(dict(
        # path "policy": the policy's initial weights, frozen (no second copy is loaded);
        # "self": the policy as it trains (self-rewarding: each step's rollout params judge).
        kind="local", path="policy", base_url="http://127.0.0.1:8000/v1", model="",
        **_init_defaults(HttpJudge.__init__, "api_key_env", "timeout_s", "max_retries",
                         "concurrency", "max_reply_bytes"),
        cache=True,
        # A step whose judge calls fail more often than this stops the run (checkpointed)
        # instead of training on made-up rewards.
        max_failure_rate=0.2,
        # Several judges as one: a tuple of dicts with any of JUDGE_FIELDS (the rest are this
        # block's), e.g. ({"kind": "http", "base_url": ..., "model": ...}, {"kind": "local"});
        # empty: this block is the one judge. ensemble_vote: negojax.rewards.ensemble's.
        ensemble=(), ensemble_vote=VOTES[0]))
    # mode: what each seat is paid (negojax.rewards.REWARD_MODES); prosocial: the collective
    # reward's weight under "mixed".
    c.reward = ml_collections.ConfigDict(dict(
        fallback=FALLBACKS[0], components=ml_collections.ConfigDict(
            {name: 0.0 for name in COMPONENTS}), mode=REWARD_MODES[0], prosocial=0.5))
    hparams = TrainHParams()
    # credit: which advantage each token gets (negojax.rl.credit). skip_zero_advantage_groups:
    # DAPO's dynamic sampling, groups whose advantages are all 0 leave the update; with
    # oversample_prompts more prompts are rolled out each step, so that up to prompts_per_step
    # groups with signal fill the update.
    c.rl = ml_collections.ConfigDict(dict(advantage=METHODS[0], credit=CREDITS.names()[0],
                                          skip_zero_advantage_groups=False, oversample_prompts=0))
    c.optim = ml_collections.ConfigDict(dict(schedule="constant"))
    c.train = ml_collections.ConfigDict(dict(
        steps=3, eval_every=0, checkpoint_every=1, keep_checkpoints=2, log_every=1,
        quick_eval_tasks=2,
        # This many non-finite updates in a row (each skipped) stop the run, checkpointed.
        max_consecutive_skips=3))
    for field, key in TRAIN_KEYS.items():
        section, name = key.split(".")
        if field != "total_steps":  # train.steps is the run's own
            value = getattr(hparams, field)
            # None (dual_clip off) needs a typed placeholder for --config.rl.dual_clip=3 to set.
            c[section][name] = ml_collections.config_dict.placeholder(float) if value is None \
                else value
    c.eval = ml_collections.ConfigDict(dict(
        num_tasks=100, open_ended_tasks=100, capability_prompts=120, reasoning_problems=120,
        decodings=("greedy", "sampled"), trained_path="", baseline_path="",
        answer_max_new_tokens=256, n_resamples=1000, gsm8k_data_dir="",
        # How process metrics compare two turns: "lexical" (free) or "judge" (a call a pair).
        process_similarity="lexical",
        # CA-scored final solutions scored again to report the judge's agreement with itself or
        # with a second judge (0: no calibration).
        calibration_samples=16, calibration_judge=CALIBRATION_JUDGES[0],
        # Whom the evaluated models also play in a computed environment, beyond themselves
        # (EVAL_OPPONENTS): "base", model B in the seats beside the evaluated model's seat 0.
        opponents=()))
    c.wandb = ml_collections.ConfigDict(dict(enabled=False, project="negojax"))
    return c


def load_config_file(path: str):
    """get_config() of a config file (configs/<name>.py); a config may start from another's."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config={path}: no such file; pass --config=configs/<name>.py")
    name = "negojax_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the file's own code: a syntax error, a failing import
        raise ConfigError(f"--config={path}: {_first_line(error)}; fix the file") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config={path}: defines no get_config(); add one returning a "
                          "ConfigDict")
    try:
        config = module.get_config()
    except ConfigError:  # a config it starts from said what is wrong there
        raise
    except Exception as error:
        raise ConfigError(f"--config={path}: get_config() raised {_first_line(error)}; fix "
                          "the file") from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"--config={path}: get_config() returned a {type(config).__name__}; "
                          "return a ConfigDict (start from base_config())")
    return config


def _first_line(error: Exception) -> str:
    """`Type: message`, the message cut to its first line."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def _fail(key: str, problem: str) -> None:
    raise ConfigError(f"config.{key}: {problem}")


def _enum(config, key: str, allowed) -> None:
    value = config_value(config, key)
    if value not in allowed:
        _fail(key, f"{value!r} is not one of {', '.join(allowed)}; set --config.{key}=<one of them>")


def _check_eval_opponents(config) -> None:
    opponents = config.eval.opponents
    if not isinstance(opponents, (tuple, list)) or any(o not in EVAL_OPPONENTS for o in opponents) \
            or len(set(opponents)) < len(opponents):
        _fail("eval.opponents", f"{opponents!r} must list distinct opponents from "
              f"{', '.join(EVAL_OPPONENTS)}, e.g. --config.eval.opponents=\"('base',)\"")
    if not opponents:
        return
    from negojax.environments import environment_class
    if environment_class(config.env.name).judged:
        _fail("eval.opponents", f"{config.env.name}'s judged suite plays each model against "
              "itself; opponents are for environments that compute their outcome "
              "(resource_split); leave eval.opponents empty")
    if config.rollout.scheduler == "continuous":
        _fail("eval.opponents", "'base' seats model B as an opponent of its own, which "
              "rollout.scheduler=continuous does not run; evaluate with "
              "--config.rollout.scheduler=lockstep")


def _check_reward_mode(config) -> None:
    """A seat paid its own utility needs an environment with per-seat outcomes, and credit that
    compares a seat with the same seat (`seat`): the other credits give one reward to all."""
    _enum(config, "reward.mode", REWARD_MODES)
    if not 0 <= config.reward.prosocial <= 1:
        _fail("reward.prosocial", f"{config.reward.prosocial} must lie in [0, 1]")
    mode = config.reward.mode
    if mode == "collective":
        return
    from negojax.environments import environment_class
    if not environment_class(config.env.name).pays_each_seat():
        _fail("reward.mode", f"{mode!r} pays each seat its own utility, which "
              f"{config.env.name} does not give (a judge scores one solution for all); use an "
              "environment with per-seat outcomes (resource_split) or reward.mode=collective")
    if not CREDITS.get(config.rl.credit).per_seat:
        _fail("reward.mode", f"{mode!r} gives each seat a reward of its own, which "
              f"rl.credit={config.rl.credit} does not read (it gives one reward to every seat); "
              "set --config.rl.credit=seat")


def _registered(config, key: str, registry) -> None:
    """`key` names an entry of `registry` (a built-in, a registered one or an import path)."""
    try:
        registry.get(config_value(config, key))
    except ValueError as error:
        raise ConfigError(f"config.{error}") from None


def _positive(config, key: str, allow_zero: bool = False) -> None:
    _check_number(key, config_value(config, key), allow_zero)


def _check_number(key: str, value, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, f"{value!r} is not a number; set --config.{key} to one")
    if not math.isfinite(value):
        _fail(key, f"{value} must be a finite number; set --config.{key} to one")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        _fail(key, f"{value} must be {bound}; set --config.{key} to a {'non-negative' if allow_zero else 'positive'} number")


def config_value(config, key: str):
    """The value at a dotted key ("optim.lr", "seed")."""
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def model_path_exists(path: str) -> bool:
    if storage.is_remote(path):
        return storage.isdir(path)
    return (path == "default" or path in PRESETS or os.path.isdir(path)
            or (path.endswith(".gguf") and os.path.isfile(path)))


def _check_workdir(path: str) -> None:
    """A workdir that can be written: local folders are checked up to their nearest existing
    parent (object-store URLs are left to the run)."""
    if not path.strip():
        _fail("workdir", "is empty; set --config.workdir to the run's folder")
    if "://" in path:
        return
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        _fail("workdir", f"{path!r}: {existing} is a file, not a folder; choose another "
              "--config.workdir")
    if not os.access(existing, os.W_OK | os.X_OK):
        _fail("workdir", f"{path!r}: {existing} is not writable; choose a --config.workdir you "
              "can write to")


def _check_tokenizer(model) -> None:
    """Every mode reads or writes text: a weights-only checkpoint needs model.tokenizer."""
    if model.tokenizer and not has_tokenizer(model.tokenizer):
        _fail("model.tokenizer", f"{model.tokenizer!r} holds no tokenizer.json or "
              "tokenizer.model; point it at a model directory with a tokenizer")
    if model.chat_template and not os.path.isfile(model.chat_template):
        _fail("model.chat_template", f"{model.chat_template!r} is not a file; point it at a "
              "Jinja chat template (.jinja)")
    if (not model.tokenizer and os.path.isdir(model.path)
            and not has_tokenizer(model.path)):
        _fail("model.path", f"{model.path!r} has weights but no tokenizer.json or "
              "tokenizer.model; set model.tokenizer to a directory holding the tokenizer")


def _judge_block(config) -> dict:
    return {name: config.judge[name] for name in JUDGE_FIELDS}


def judge_entries(config) -> list[tuple[str, dict]]:
    """(key, fields) of every configured judge: the `judge` block alone, or each
    `judge.ensemble` entry over the block's fields. An entry that is no dict, or names a field
    a judge does not have, is a ConfigError."""
    block = _judge_block(config)
    if not isinstance(config.judge.ensemble, (tuple, list)):
        _fail("judge.ensemble", f"{config.judge.ensemble!r} is not a list of judges; pass "
              "--config.judge.ensemble=\"({'kind': 'http', ...}, {'kind': 'local'})\"")
    if len(config.judge.ensemble) == 1:
        _fail("judge.ensemble", "has one member; give two or more, or leave it empty and set "
              "the judge block")
    entries = []
    for i, entry in enumerate(config.judge.ensemble):
        key = f"judge.ensemble[{i}]"
        if not isinstance(entry, (dict, ml_collections.ConfigDict)):
            _fail(key, f"{entry!r} is not a dict of judge fields ({', '.join(JUDGE_FIELDS)})")
        entry = dict(entry)
        unknown = sorted(set(entry) - set(JUDGE_FIELDS))
        if unknown:
            _fail(f"{key}.{unknown[0]}", f"is not a judge field; known: {', '.join(JUDGE_FIELDS)}")
        entries.append((key, {**block, **entry}))
    return entries or [("judge", block)]


def _check_judge(entry: dict, key: str) -> None:
    """One judge's fields (the judge block's or an ensemble entry's), named under `key`."""
    try:
        JUDGES.get(entry["kind"])
    except ValueError as error:  # named by this judge's key (an ensemble member's, say)
        _fail(f"{key}.kind", str(error).partition(": ")[2])
    if entry["kind"] == "local" and entry["path"] not in POLICY_JUDGES \
            and not model_path_exists(entry["path"]):
        _fail(f"{key}.path", f"{entry['path']!r} does not exist; point it at an HF model "
              "directory, a .gguf file, 'default', 'policy' (the policy's initial weights) or "
              "'self' (the policy as it trains)")
    _check_endpoint(entry, key, "judge")


def _check_endpoint(entry: dict, key: str, role: str) -> None:
    """The HTTP fields of a block that may name an OpenAI-compatible endpoint (a judge's, an
    opponent model's)."""
    if entry["kind"] == "http" and not entry["model"]:
        _fail(f"{key}.model", f"is empty; name the {role} model the endpoint serves")
    if entry["kind"] == "http" and not str(entry["base_url"]).startswith(("http://",
                                                                        "https://")):
        _fail(f"{key}.base_url", f"{entry['base_url']!r} is not an http(s) URL; set it to "
              "the endpoint, for example http://127.0.0.1:8000/v1")
    for name, allow_zero in (("timeout_s", False), ("max_retries", True), ("concurrency", False),
                             ("max_reply_bytes", False)):
        _check_number(f"{key}.{name}", entry[name], allow_zero)


def _check_opponent_model(block: dict) -> None:
    key = "rollout.opponent_model"
    if block["kind"] not in OPPONENT_MODEL_KINDS:
        _fail(f"{key}.kind", f"{block['kind']!r} is not one of {', '.join(OPPONENT_MODEL_KINDS)}")
    path = block["path"]
    if block["kind"] == "local" and (not path or not model_path_exists(path)
                                     or (path in PRESETS and not os.path.exists(path))):
        _fail(f"{key}.path", f"{path!r} is not a checkpoint with a tokenizer; point it at an "
              "HF model directory, a .gguf file or 'default'")
    _check_endpoint(block, key, "opponent")


def _check_environment(config) -> None:
    """env.name resolves to an Environment; resource_split's keys and data.dir are usable by
    the environment that reads them."""
    from negojax.environments import environment_class
    from negojax.environments.resource_games import WELFARES
    from negojax.environments.resource_split import PARTY_COUNTS
    try:
        cls = environment_class(config.env.name)
    except ValueError as error:
        raise ConfigError(f"config.{error}") from None
    _enum(config, "env.welfare", WELFARES)
    parties = config.env.parties
    if (not isinstance(parties, (tuple, list)) or not parties
            or any(n not in PARTY_COUNTS for n in parties)):
        _fail("env.parties", f"{parties!r} must be a list of party counts from "
              f"{', '.join(map(str, PARTY_COUNTS))}, e.g. --config.env.parties=\"(2, 3)\"")
    for key in ("train_tasks", "eval_tasks"):
        _positive(config, f"env.{key}")
    _positive(config, "env.seed", allow_zero=True)
    if config.data.dir:
        if config.env.name != "deliberation":
            _fail("data.dir", f"is read by the deliberation environment, not {config.env.name}; "
                  "leave it empty or set --config.env.name=deliberation")
        from negojax.data.layouts import layout_of
        try:  # every row, before anything loads: a bad one is named by file, line and field
            layout_of(config.data.dir).load(config.data.dir)
        except ValueError as error:
            _fail("data.dir", str(error))
    if config.rollout.setting == "single_agent" and not cls.judged:
        _fail("rollout.setting", f"single_agent answers are scored by a judge, and "
              f"{config.env.name} computes its own outcome from a dialogue; use "
              "rollout.setting=negotiation")


def validate_static(config) -> None:
    """Keys, enums, ranges and paths; nothing that needs the network. Every key is checked
    whatever the mode, so a bad value never waits for the mode that reads it."""
    _enum(config, "mode", MODES)
    _positive(config, "seed", allow_zero=True)
    _positive(config, "chat.max_new_tokens")
    for key in ("model.dtype", "model.param_dtype"):
        _enum(config, key, DTYPE_NAMES)
    if not config.model.path:
        _fail("model.path", "is empty; set it to 'default', an HF model directory, a .gguf file "
              f"or a preset ({', '.join(sorted(PRESETS))})")
    if not model_path_exists(config.model.path):
        _fail("model.path", f"{config.model.path!r} does not exist; point it at an HF model "
              "directory, a .gguf file, 'default' or a preset name")
    if config.model.path in PRESETS and not os.path.exists(config.model.path):
        # Every mode reads or writes text, and a preset has no tokenizer (nor weights).
        _fail("model.path", f"preset {config.model.path!r} has no weights and no tokenizer; "
              "point model.path at a checkpoint (an HF directory, a .gguf file or 'default'), "
              "with model.random_init=True and model.overrides for a tiny random model")
    if config.model.overrides and not config.model.random_init:
        _fail("model.overrides", "changes the architecture, so it needs "
              "--config.model.random_init=True")
    _check_tokenizer(config.model)
    if config.mode == "chat" and not config.prompt:
        _fail("prompt", "is empty; pass --config.prompt=\"...\" in chat mode")
    if config.mode != "chat":
        _check_workdir(config.workdir)
    _positive(config, "lora.rank", allow_zero=True)
    _positive(config, "lora.alpha")
    _enum(config, "lora.base_dtype", lora.BASE_STORAGES)
    _mesh(config, device_count=None)
    r = config.rollout
    for key in ("prompts_per_step", "group_size", "opponent_refresh", "opponent_pool_size"):
        _positive(config, f"rollout.{key}")
    _positive(config, "rollout.context_turns", allow_zero=True)
    if r.group_size < 2 and config.mode == "train":
        _fail("rollout.group_size", f"{r.group_size} gives every sample a zero group-relative "
              "advantage; set it to 2 or more")
    _enum(config, "rollout.opponent", OPPONENT_MODES)
    _enum(config, "rollout.policy_seats", POLICY_SEATS)
    if r.policy_seats == "all" and r.opponent != "live":
        _fail("rollout.policy_seats", f"'all' seats the policy everywhere, so there is no "
              f"{r.opponent} opponent to play; set --config.rollout.opponent=live or choose "
              "policy_seats first or rotate")
    if r.opponent == "model" and r.scheduler == "continuous":
        _fail("rollout.scheduler", "'continuous' decodes in slots of the run's own models; an "
              "opponent of its own (rollout.opponent=model) plays with scheduler=lockstep")
    _check_opponent_model(r.opponent_model.to_dict())
    _enum(config, "rollout.setting", SETTINGS)
    from negojax.run.build import negotiation_config, train_hparams
    try:  # the engine's own ranges; its messages name the rollout key
        negotiation_config(r)
    except ValueError as error:
        raise ConfigError(f"config.{error}") from None
    _check_environment(config)
    entries = judge_entries(config)
    if config.judge.ensemble:  # the block is checked even where every member overrides it
        _check_judge(_judge_block(config), "judge")
    for key, entry in entries:
        _check_judge(entry, key)
    _enum(config, "judge.ensemble_vote", VOTES)
    if config.judge.ensemble and any(e["path"] == "self" for _, e in entries):
        _fail("judge.path", "'self' (the policy judging itself as it trains) cannot be a member "
              "of judge.ensemble; use 'policy' there, or judge with the policy alone")
    if not 0 <= config.judge.max_failure_rate <= 1:
        _fail("judge.max_failure_rate", f"{config.judge.max_failure_rate} must lie in [0, 1]")
    _enum(config, "reward.fallback", FALLBACKS)
    for name in config.reward.components:
        if name not in COMPONENTS:
            _fail(f"reward.components.{name}", f"unknown component; known: {sorted(COMPONENTS)}")
        _positive(config, f"reward.components.{name}", allow_zero=True)
    for key, registry in (("rl.advantage", ADVANTAGES), ("rl.credit", CREDITS)):
        _registered(config, key, registry)
    _check_reward_mode(config)
    oversample = config.rl.oversample_prompts
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 0:
        _fail("rl.oversample_prompts", f"{oversample!r} must be an integer >= 0")
    if oversample and not config.rl.skip_zero_advantage_groups:
        _fail("rl.oversample_prompts", f"{oversample} extra prompts only replace groups that "
              "rl.skip_zero_advantage_groups drops; set it to True or oversample_prompts to 0")
    _enum(config, "optim.schedule", SCHEDULES)
    if not 0 <= config.optim.final_lr_fraction <= 1:  # checked whatever the schedule
        _fail("optim.final_lr_fraction", f"{config.optim.final_lr_fraction} must lie in [0, 1]")
    _positive(config, "train.steps")
    try:  # the optimizer's and the loss's own ranges, named by the keys that set them
        train_hparams(config)
    except ValueError as error:
        field, _, problem = str(error).partition(": ")
        raise ConfigError(f"config.{TRAIN_KEYS.get(field, field)}: {problem}") from None
    for key in ("eval_every", "checkpoint_every", "quick_eval_tasks"):
        _positive(config, f"train.{key}", allow_zero=True)
    for key in ("keep_checkpoints", "log_every", "max_consecutive_skips"):
        _positive(config, f"train.{key}")
    if config.optim.warmup_steps >= config.train.steps and config.optim.schedule == "cosine":
        _fail("optim.warmup_steps", f"{config.optim.warmup_steps} must be below train.steps "
              f"({config.train.steps}) for the cosine schedule")
    for decoding in config.eval.decodings:
        if decoding not in ("greedy", "sampled"):
            _fail("eval.decodings", f"{decoding!r} is not greedy or sampled")
    _enum(config, "eval.process_similarity", SIMILARITIES)
    _check_eval_opponents(config)
    for key in ("num_tasks", "answer_max_new_tokens", "n_resamples"):
        _positive(config, f"eval.{key}")
    for key in ("open_ended_tasks", "capability_prompts", "reasoning_problems",
                "calibration_samples"):
        _positive(config, f"eval.{key}", allow_zero=True)
    if config.mode == "eval":
        # only evaluation reads the prompts, and importing IFEval's checkers (datasets, nltk) takes seconds
        from negojax.eval.instructions import instruction_prompts
        shipped = len(instruction_prompts())
        if config.eval.capability_prompts > shipped:
            _fail("eval.capability_prompts", f"{config.eval.capability_prompts} is more than the {shipped} "
                  f"shipped IFEval-format prompts; set it to at most {shipped}")
    _enum(config, "eval.calibration_judge", CALIBRATION_JUDGES)
    if config.eval.calibration_judge == "second_member" and len(config.judge.ensemble) < 2:
        _fail("eval.calibration_judge", "is second_member but judge.ensemble has fewer than 2 "
              "members; add one or set it to reordered")
    if config.mode == "train" and config.wandb.enabled and importlib.util.find_spec("wandb") is None:
        _fail("wandb.enabled", "is True but wandb is not installed; run pip install 'negojax[wandb]' "
              "or set --config.wandb.enabled=False")


def _mesh(config, device_count: int | None) -> dict:
    """mesh.{data, fsdp, tensor}, checked on their own (device_count None) or resolved against
    the devices present."""
    from negojax.parallel.mesh import check_mesh_sizes, mesh_sizes
    m = config.mesh
    try:
        if device_count is None:
            return check_mesh_sizes(m.data, m.fsdp, m.tensor)
        return mesh_sizes(m.data, m.fsdp, m.tensor, device_count)
    except ValueError as error:
        raise ConfigError(f"config.{error}") from None


def validate_devices(config, device_count: int, process_count: int) -> dict:
    """Batch and host divisibility on the real device layout; returns the resolved mesh sizes."""
    sizes = _mesh(config, device_count)
    if config.mode != "train":
        return sizes
    r = config.rollout
    for key in ("rollout.prompts_per_step", "rl.oversample_prompts"):
        if config_value(config, key) % process_count:
            _fail(key, f"{config_value(config, key)} is not divisible by the {process_count} "
                  f"hosts; make it a multiple of {process_count}")
    batch = r.prompts_per_step * r.group_size
    parallel = sizes["data"] * sizes["fsdp"]
    if batch % parallel:
        _fail("rollout.prompts_per_step", f"the batch prompts_per_step*group_size = {batch} is "
              f"not divisible by mesh.data*mesh.fsdp = {parallel}; change "
              "rollout.prompts_per_step, rollout.group_size or the mesh")
    return sizes

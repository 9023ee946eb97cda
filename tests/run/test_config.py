"""Config validation: every bad config is ONE stderr line naming the key, exit status 2, before
any model is loaded (so each of these runs in seconds)."""
import os
import subprocess
import sys

import pytest

from shipped_configs import REPO, shipped_config, shipped_names
from negojax.run.config import ConfigError, validate_devices, validate_static


# (bad flags, text the one line must contain, extra environment); run as real subprocesses.
BAD_CONFIGS = {
    "unknown key": (["--config.rollout.group_sze=4"],
                    "config.rollout.group_sze: unknown key in configs/tiny_test.py; did you mean "
                    "config.rollout.group_size?", {}),
    "batch vs data parallel": (["--config.mesh.data=8"],
                               "not divisible by mesh.data*mesh.fsdp",
                               {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}),
    "missing model path": (["--config.model.path=/nonexistent/model"],
                           "config.model.path: '/nonexistent/model' does not exist", {}),
    "bad enum": (["--config.rollout.opponent=everyone"],
                 "config.rollout.opponent: 'everyone' is not one of frozen, live, pool", {}),
    "judge unreachable": (["--config.judge.kind=http", "--config.judge.model=judge",
                           "--config.judge.base_url=http://127.0.0.1:9/v1"],
                          "config.judge.base_url: judge endpoint http://127.0.0.1:9/v1 is "
                          "unreachable", {}),
}


def _start(flags, env_extra):
    args = ["--config=configs/tiny_test.py", "--config.workdir=/tmp/never-written", *flags]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env_extra}
    return subprocess.Popen([sys.executable, "-m", "negojax.main", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_bad_configs_fail_in_one_line_with_exit_2():
    # All at once: each run is mostly interpreter and jax start-up.
    runs = {name: _start(flags, env) for name, (flags, _, env) in BAD_CONFIGS.items()}
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        expected = BAD_CONFIGS[name][1]
        lines = err.strip().splitlines()
        assert proc.returncode == 2, f"{name}: exit {proc.returncode}\n{err[-2000:]}"
        assert len(lines) == 1, f"{name}: stderr has {len(lines)} lines:\n{err[-2000:]}"
        assert expected in lines[0], f"{name}: {lines[0]!r} lacks {expected!r}"
        assert "Traceback" not in err and not os.path.exists("/tmp/never-written")


@pytest.mark.parametrize("argv, expected", [
    (["--config=configs/nope.py"], "--config=configs/nope.py: no such file"),
    (["--config=configs/tiny_test.py", "--config.train.stepz=3"],
     "config.train.stepz: unknown key in configs/tiny_test.py; did you mean config.train.steps?"),
])
def test_override_checks_in_process(argv, expected, monkeypatch):
    from negojax.main import check_overrides
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError) as error:
        check_overrides(["negojax.main", *argv])
    assert str(error.value).count("\n") == 0 and expected in str(error.value)


@pytest.mark.parametrize("key, value, expected", [
    ("train.steps", 0, "config.train.steps: 0 must be > 0"),
    ("rollout.top_p", 1.5, "config.rollout.top_p: 1.5 must lie in (0, 1]"),
    ("rollout.group_size", 1, "config.rollout.group_size: 1 gives every sample a zero"),
    ("rl.advantage", "ppo", "config.rl.advantage: 'ppo' is not one of grpo, dr_grpo, rloo"),
    ("model.random_init", False, "config.model.overrides: changes the architecture"),
    ("judge.path", "/no/judge", "config.judge.path: '/no/judge' does not exist"),
    # The engine's and the optimizer's own ranges, reported under the keys that set them.
    ("rollout.max_turns", 0, "config.rollout.max_turns: 0 must be an integer >= 1"),
    ("rollout.max_rounds", -1, "config.rollout.max_rounds: -1 must be an integer >= 0"),
    ("rollout.first_speaker", "last", "config.rollout.first_speaker: 'last' is not one of"),
    ("optim.lr", float("nan"), "config.optim.lr: nan must be a finite number"),
    ("optim.max_grad_norm", -1.0, "config.optim.max_grad_norm: -1.0 must be > 0"),
    ("optim.weight_decay", -5.0, "config.optim.weight_decay: -5.0 must be >= 0"),
    ("rl.clip_low", -1.0, "config.rl.clip_low: -1.0 must lie in [0, 1)"),
    ("rl.microbatches", 0, "config.rl.microbatches: 0 must be an integer >= 1"),
    ("rl.loss_aggregation", "sum", "config.rl.loss_aggregation: 'sum' is not one of"),
    ("lora.base_dtype", "nf5", "config.lora.base_dtype: 'nf5' is not one of float32, bfloat16, "
                               "int8, int4, nf4"),
    ("eval.process_similarity", "embedding", "config.eval.process_similarity: 'embedding' is not one "
                                             "of lexical, judge"),
    ("rollout.policy_seats", "middle", "config.rollout.policy_seats: 'middle' is not one of first, "
                                       "rotate, all"),
    # tiny_test's opponent is frozen: no seat is left for it
    ("rollout.policy_seats", "all", "config.rollout.policy_seats: 'all' seats the policy "
                                    "everywhere, so there is no frozen opponent to play"),
    ("rl.credit", "token", "config.rl.credit: 'token' is not one of dialogue, seat, turn"),
    ("reward.mode", "selfish", "config.reward.mode: 'selfish' is not one of collective, own, mixed"),
    ("reward.prosocial", 1.5, "config.reward.prosocial: 1.5 must lie in [0, 1]"),
    ("eval.opponents", ("negmas",), "config.eval.opponents: ('negmas',) must list distinct "
                                    "opponents from base"),
    ("eval.opponents", ("base",), "config.eval.opponents: deliberation's judged suite plays "
                                  "each model against itself"),
    # the deliberation's judge scores one solution for all seats
    ("reward.mode", "own", "config.reward.mode: 'own' pays each seat its own utility, which "
                           "deliberation does not give"),
    # dynamic sampling is off in tiny_test: extra prompts would replace nothing
    ("rl.oversample_prompts", 2, "config.rl.oversample_prompts: 2 extra prompts only replace "
                                 "groups that rl.skip_zero_advantage_groups drops"),
])
def test_static_validation_in_process(key, value, expected):
    config = shipped_config("tiny_test")
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(ConfigError) as error:
        validate_static(config)
    assert str(error.value).count("\n") == 0 and expected in str(error.value)


def test_evaluation_cannot_ask_for_more_instruction_prompts_than_are_shipped():
    config = shipped_config("tiny_test")
    config.mode, config.eval.capability_prompts = "eval", 121
    with pytest.raises(ConfigError) as error:
        validate_static(config)
    assert str(error.value) == ("config.eval.capability_prompts: 121 is more than the 120 shipped IFEval-format "
                                "prompts; set it to at most 120")
    config.eval.capability_prompts = 120
    validate_static(config)


def test_defaults_are_the_components_own():
    """base_config's engine, optimizer, LoRA and HTTP-judge defaults are those components'
    defaults, so each exists once."""
    import dataclasses
    import inspect
    from negojax.models import lora
    from negojax.negotiation import NegotiationConfig
    from negojax.rewards import HttpJudge
    from negojax.rl import TrainHParams
    from negojax.run.build import negotiation_config, train_hparams
    from negojax.run.config import TRAIN_KEYS, base_config
    c = base_config()
    assert negotiation_config(c.rollout) == NegotiationConfig()
    hparams = TrainHParams()
    for field, key in TRAIN_KEYS.items():
        if field != "total_steps":
            section, name = key.split(".")
            assert c[section][name] == getattr(hparams, field), key
    built = train_hparams(c)
    assert dataclasses.replace(built, total_steps=hparams.total_steps,
                               final_lr_fraction=hparams.final_lr_fraction) == hparams
    assert tuple(c.lora.targets) == lora.DEFAULT_TARGETS
    defaults = inspect.signature(HttpJudge.__init__).parameters
    for name in ("api_key_env", "timeout_s", "max_retries", "concurrency"):
        assert c.judge[name] == defaults[name].default, name


def test_every_train_hparams_field_is_reached_by_a_config_key():
    """A field of the train step with no key is a knob no user can turn (dual_clip was
    implemented and tested, but no key reached it): each is in TRAIN_KEYS or derived."""
    import dataclasses
    from negojax.rl import TrainHParams
    from negojax.run.build import train_hparams
    from negojax.run.config import DERIVED_TRAIN_FIELDS, TRAIN_KEYS
    fields = {f.name for f in dataclasses.fields(TrainHParams)}
    assert fields == set(TRAIN_KEYS) | set(DERIVED_TRAIN_FIELDS)
    config = shipped_config("tiny_test")
    config.rl.dual_clip = 3.0
    config.optim.adam_b2 = 0.95
    hparams = train_hparams(config)
    assert (hparams.dual_clip, hparams.adam_b2) == (3.0, 0.95)


def test_wandb_without_its_extra_names_the_install(monkeypatch):
    config = shipped_config("tiny_test")
    config.wandb.enabled = True
    monkeypatch.setitem(sys.modules, "wandb", None)  # as on a machine without the extra
    with pytest.raises(ConfigError) as error:
        validate_static(config)
    assert str(error.value) == ("config.wandb.enabled: is True but wandb is not installed; run "
                                "pip install 'negojax[wandb]' or set --config.wandb.enabled=False")


def test_prompts_per_step_must_split_over_hosts():
    config = shipped_config("tiny_test")
    with pytest.raises(ConfigError, match=r"config.rollout.prompts_per_step: 2 is not divisible "
                                          r"by the 3 hosts"):
        validate_devices(config, device_count=3, process_count=3)
    assert validate_devices(config, device_count=2, process_count=2) == \
        {"data": 2, "fsdp": 1, "tensor": 1}
    config.rl.skip_zero_advantage_groups, config.rl.oversample_prompts = True, 3
    with pytest.raises(ConfigError, match=r"config.rl.oversample_prompts: 3 is not divisible "
                                          r"by the 2 hosts"):
        validate_devices(config, device_count=2, process_count=2)


def test_shipped_configs_validate():
    from negojax.run.config import validate_static
    for name in ("default", "tiny_test"):
        validate_static(shipped_config(name))


def test_every_shipped_config_gives_every_party_of_its_training_tasks_a_turn():
    """Agreement waits until every seat has spoken: a turn limit below a task's party count
    means that task can never agree and always earns 0."""
    from negojax.run.build import environment, negotiation_config
    checked = []
    for name in shipped_names():
        config = shipped_config(name)
        if config.rollout.setting != "negotiation":  # single-agent answers take no turns
            continue
        limit = negotiation_config(config.rollout).turn_limit
        counts = {len(t.personas) for t in environment(config).tasks("train")}
        short = {n: limit(n) for n in sorted(counts) if limit(n) < n}
        assert not short, f"configs/{name}.py: turn limits {short} by party count"
        checked.append(name)
    assert {"default", "tiny_test", "resource_split", "tpu_v4"} <= set(checked)


def test_tpu_v4_config_is_the_method_setting_on_a_v4_64_mesh():
    c = shipped_config("tpu_v4")
    assert (c.rollout.group_size, c.rollout.prompts_per_step, c.optim.lr, c.rl.beta) == \
        (8, 16, 5e-6, 0.0)
    assert (c.rollout.max_turns, c.rollout.context_turns, c.rollout.temperature,
            c.rollout.top_p, c.rollout.final_temperature) == (7, 2, 0.7, 0.95, 0.1)
    assert c.rl.loss_aggregation == "token_mean" and c.lora.rank > 0
    assert c.mesh.data * c.mesh.fsdp * c.mesh.tensor == 32  # v4-64: 32 chips
    # 8 hosts, and the batch splits over data x fsdp x microbatches.
    sizes = validate_devices(c, device_count=32, process_count=8)
    assert sizes == {"data": 1, "fsdp": 8, "tensor": 4}


@pytest.mark.parametrize("name,devices,mesh", [
    ("tpu_v4_8", 4, {"data": 1, "fsdp": 4, "tensor": 1}),
    ("gpu_80gb", 1, {"data": 1, "fsdp": 1, "tensor": 1})])
def test_qlora_configs_are_the_method_on_their_machine(name, devices, mesh):
    """The method's settings with an nf4 base and rematerialised layers; only the machine's
    keys differ from configs/tpu_v4.py (BENCHMARKS.md measures their train step)."""
    c, method = shipped_config(name), shipped_config("tpu_v4")
    assert c.lora.base_dtype == "nf4" and c.rl.remat and not c.distributed
    assert validate_devices(c, device_count=devices, process_count=1) == mesh
    for section in ("rollout", "optim", "model"):
        differ = {k for k in method[section] if c[section][k] != method[section][k]}
        assert differ <= {"path"}, (section, differ)
    assert {k for k in method.rl if c.rl[k] != method.rl[k]} == {"microbatches"}
    assert (c.lora.rank, c.lora.alpha) == (method.lora.rank, method.lora.alpha)


def test_single_agent_config_is_the_papers_baseline_on_the_methods_machine():
    """Self-rewarding GRPO (the policy's model judges), beta 0.04, batch 32, temperature 1.0;
    everything else as configs/tpu_v4.py."""
    c, method = shipped_config("single_agent"), shipped_config("tpu_v4")
    assert c.rollout.setting == "single_agent" and method.rollout.setting == "negotiation"
    assert (c.judge.kind, c.judge.path, c.rl.beta, c.rollout.temperature) == \
        ("local", "self", 0.04, 1.0)
    assert c.rollout.prompts_per_step * c.rollout.group_size == 32
    assert validate_devices(c, device_count=32, process_count=8) == \
        {"data": 1, "fsdp": 8, "tensor": 4}
    assert (c.model.path, c.lora.rank, c.optim.lr) == (method.model.path, method.lora.rank,
                                                       method.optim.lr)


def test_a_seat_paid_its_own_needs_credit_that_reads_it():
    config = shipped_config("resource_split")
    config.reward.mode = "mixed"
    with pytest.raises(ConfigError, match="^config.reward.mode: 'mixed' gives each seat a reward "
                                          "of its own, which rl.credit=dialogue does not read"):
        validate_static(config)
    config.rl.credit = "seat"
    validate_static(config)

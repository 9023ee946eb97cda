"""A resume keeps every setting that changes what a sample means (build.RESUME_KEYS): a change is
refused in one line naming the keys, with flags that resume as saved, before anything loads.
Without it, a league run resumed as frozen then as league again failed deep in the opponent
draw (`a and p must have same size`)."""
import shlex

import jax.numpy as jnp
import pytest
from absl import flags
from ml_collections import config_flags

from negojax.checkpoints import TrainCheckpointer
from negojax.run.build import check_resumable, resume_settings
from negojax.run.config import ConfigError, load_config_file
from shipped_configs import REPO
from trainer_runs import one_line_error, run_main

TINY = f"{REPO}/configs/tiny_test.py"


def _config(**changes):
    config = load_config_file(TINY)
    with config.unlocked():
        for key, value in changes.items():
            section, name = key.split("__")
            config[section][name] = value
    return config


def _checkpoint(tmp_path, config) -> TrainCheckpointer:
    ckpt = TrainCheckpointer(str(tmp_path), save_every=1, keep=1)
    ckpt.save(1, {"w": jnp.zeros(2)}, {"resume_settings": resume_settings(config)})
    ckpt.wait()
    return ckpt


def _parsed(flag_text: str):
    """The tiny config with the refusal's flags applied, as the command line would."""
    argv = ["negojax", f"--config={TINY}", *shlex.split(flag_text)]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=values, sys_argv=argv)
    values(argv)
    return values.config


@pytest.mark.parametrize("changes", [
    {"rollout__opponent": "league"}, {"rollout__policy_seats": "rotate"},
    {"rl__credit": "seat"}, {"reward__fallback": "drop"}, {"env__welfare": "sum"},
    {"judge__path": "self"}])
def test_a_resume_that_changes_what_a_sample_means_is_refused(tmp_path, changes):
    saved = _config()
    ckpt = _checkpoint(tmp_path, saved)
    try:
        check_resumable(ckpt, resume_settings(saved))  # the same settings resume
        with pytest.raises(ConfigError) as err:
            check_resumable(ckpt, resume_settings(_config(**changes)))
    finally:
        ckpt.close()
    line = str(err.value)
    [key] = [k.replace("__", ".") for k in changes]
    assert "\n" not in line and f"config.{key}=" in line and "--config.workdir" in line
    flag_text = line.split("resume it with ", 1)[1].split(", or pass", 1)[0]
    assert resume_settings(_parsed(flag_text)) == resume_settings(saved)


def test_refused_lists_and_dicts_render_as_flags_the_command_line_takes(tmp_path):
    saved = _config(env__parties=(2, 3), lora__targets=("q_proj", "v_proj"))
    with saved.unlocked():
        saved.model.overrides.num_layers = 3
        saved.reward.components.overlong_turn_penalty = 0.5
    ckpt = _checkpoint(tmp_path, saved)
    try:
        with pytest.raises(ConfigError) as err:
            check_resumable(ckpt, resume_settings(_config()))
    finally:
        ckpt.close()
    flag_text = str(err.value).split("resume it with ", 1)[1].split(", or pass", 1)[0]
    assert "--config.model.overrides.num_layers=3" in flag_text
    assert resume_settings(_parsed(flag_text)) == resume_settings(saved)


def test_resuming_a_frozen_run_as_a_league_is_refused_in_one_line(tmp_path):
    run_main("tiny_test", tmp_path, "--config.train.steps=1", "--config.rollout.opponent=frozen")
    line = one_line_error(run_main("tiny_test", tmp_path, "--config.train.steps=2",
                                   "--config.rollout.opponent=league", status=2))
    assert "config.rollout.opponent='frozen' (now 'league')" in line, line
    assert "--config.rollout.opponent=frozen" in line and "--config.workdir" in line, line

"""Every key is validated before any model loads: a bad value for each numeric leaf of
base_config, and each bad value a careless user was seen to try, is one stderr line naming the
key, exit status 2, no traceback (real processes of `python -m negojax.main`)."""
import concurrent.futures
import math
import os
import subprocess
import sys

import pytest

from negojax.run.config import base_config
from shipped_configs import REPO


def numeric_leaves(config, prefix=""):
    for key, value in config.items():
        if hasattr(value, "items"):
            yield from numeric_leaves(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


def bad_value(key: str, value) -> str:
    """NaN for a float; an integer below its range (-1 is a valid mesh size, so 0 there)."""
    if isinstance(value, float):
        return "nan"
    return "0" if key.startswith("mesh.") else "-1"


# Bad values of other kinds, each seen to give a traceback or to pass silently before.
OTHER_BAD = [
    ("--config.judge.kind=http", "--config.judge.model=j", "--config.judge.base_url="),
    ("--config.judge.kind=http", "--config.judge.model=j", "--config.judge.base_url=ftp://x"),
    ("--config.judge.timeout_s=0",),
    ("--config.rollout.opponent_model.kind=grpc",),
    ("--config.rollout.opponent_model.path=/nonexistent-opponent",),
    ("--config.rollout.opponent_model.path=qwen3-0.6b",),  # a preset: no tokenizer to talk with
    ("--config.rollout.opponent_model.kind=http", "--config.rollout.opponent_model.model=m",
     "--config.rollout.opponent_model.base_url=ftp://x"),
    ("--config.rollout.temperature=inf",),
    ("--config.rl.loss_aggregation=sum",),
    ("--config.optim.max_grad_norm=-1",),
    ("--config.workdir=",),
    ("--config.workdir=/proc/negojax-run",),
    ("--config.model.path=qwen3-0.6b", "--config.model.overrides={}"),
    ("--config.model.tokenizer=/nonexistent-tokenizer",),
    ("--config.model.chat_template=/nonexistent.jinja",),
    ("--config.rollout.scheduler=continuous", "--config.rollout.context_turns=0"),
    ("--config.rollout.scheduler=continuous", "--config.rollout.opponent=model"),
]


def _run(flags) -> tuple[int, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "negojax.main", "--config=configs/tiny_test.py",
                           "--config.workdir=/tmp/negojax-never-written", *flags], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


def test_every_numeric_key_has_a_bad_value_that_is_one_line_with_status_2():
    leaves = dict(numeric_leaves(base_config()))
    assert len(leaves) >= 40
    cases = {key: (f"--config.{key}={bad_value(key, value)}",) for key, value in leaves.items()}
    cases.update({" ".join(flags): flags for flags in OTHER_BAD})
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = dict(zip(cases, pool.map(_run, cases.values())))
    problems = []
    for name, (status, stderr) in results.items():
        lines = stderr.strip().splitlines()
        key = name.split(" ")[-1].split("=")[0].removeprefix("--config.")
        if status != 2 or len(lines) != 1 or "Traceback" in stderr or (
                name in leaves and f"config.{key}" not in lines[0]):
            problems.append(f"{name}: exit {status}: {stderr.strip()[-300:]}")
    print(f"{len(results)} bad values tried, {len(results) - len(problems)} refused in one line")
    assert not problems, "\n".join(problems)
    assert not os.path.exists("/tmp/negojax-never-written")
    assert math.isnan(float("nan"))  # the CLI parses "nan" as a float NaN

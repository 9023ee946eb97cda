"""Every key is validated before any model loads: a bad value for each numeric leaf of
base_config, and each bad value a careless user was seen to try, is one stderr line naming the
key, exit status 2, no traceback.

Each case is a process of its own running the command line's entry point (`negojax.main.run`,
what `python -m negojax.main` calls) with its stderr and exit status read by the parent. The
~80 cases fork from one driver that has imported negojax once, rather than each starting an
interpreter and importing jax again (which took most of this test's minutes); the driver never
starts a JAX backend, so each child starts its own as a fresh process would."""
import json
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


# Reads a JSON list of argument lists on stdin; writes [exit status, stderr] per case.
DRIVER = r"""
import json, os, sys
import negojax.main as cli
import negojax.run.build  # the modules a run imports on its way, imported once
results = []
for args in json.load(sys.stdin):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.dup2(write, 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.argv = ["negojax.main", *args]
        code = 0
        try:
            cli.run()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(write)
    with os.fdopen(read, encoding="utf-8", errors="replace") as pipe:
        stderr = pipe.read()
    results.append([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), stderr])
json.dump(results, sys.stdout)
"""


def _run_all(cases: list[tuple]) -> list[tuple[int, str]]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = [["--config=configs/tiny_test.py", "--config.workdir=/tmp/negojax-never-written",
             *flags] for flags in cases]
    proc = subprocess.run([sys.executable, "-c", DRIVER], cwd=REPO, env=env, input=json.dumps(args),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [tuple(r) for r in json.loads(proc.stdout)]


def test_every_numeric_key_has_a_bad_value_that_is_one_line_with_status_2():
    leaves = dict(numeric_leaves(base_config()))
    assert len(leaves) >= 40
    cases = {key: (f"--config.{key}={bad_value(key, value)}",) for key, value in leaves.items()}
    cases.update({" ".join(flags): flags for flags in OTHER_BAD})
    results = dict(zip(cases, _run_all(list(cases.values()))))
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

"""Run `python -m negojax.main` as a real process, or as the processes of a small pod on
127.0.0.1, sharing one persistent XLA compilation cache so repeated tiny runs skip recompiling
the same programs."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from shipped_configs import REPO

COMPILE_CACHE = os.path.join(tempfile.gettempdir(), "negojax-test-xla-cache")


# jax.distributed's gRPC would send 127.0.0.1 through a proxy.
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra) -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": COMPILE_CACHE,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0", "PYTHONUNBUFFERED": "1", **extra}


def main_args(config: str, workdir, *flags) -> list:
    return [sys.executable, "-m", "negojax.main", f"--config=configs/{config}.py",
            f"--config.workdir={workdir}", f"--config.jax_cache_dir={COMPILE_CACHE}", *flags]


def run_main(config: str, workdir, *flags, timeout: int = 600, status: int = 0,
             extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """The finished process, whose exit status must be `status`."""
    proc = subprocess.run(main_args(config, workdir, *flags), cwd=REPO, env=env(**(extra_env or {})),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == status, \
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a run refused with status 2 (no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, \
        f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return lines[0]


def start_main(config: str, workdir, *flags) -> subprocess.Popen:
    return subprocess.Popen(main_args(config, workdir, *flags), cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_pod(config: str, workdir, *flags, logs, devices: int = 2) -> list[subprocess.Popen]:
    """The processes of a pod, one per path in `logs` (each writes its output there), set up
    as launch/local.sh sets them: jax.distributed over gloo, `devices` CPU devices each."""
    port = free_port()
    base = {k: v for k, v in env().items() if k not in PROXY_VARS}
    base.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(len(logs)),
                XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    args = main_args(config, workdir, "--config.distributed=True", *flags)
    procs = []
    for i, path in enumerate(logs):
        with open(path, "w", encoding="utf-8") as out:  # the child keeps its own descriptor
            procs.append(subprocess.Popen(args, cwd=REPO, env={**base, "JAX_PROCESS_ID": str(i)},
                                          stdout=out, stderr=subprocess.STDOUT))
    return procs


def wait_for_first_step(workdir, procs, timeout: float = 400) -> None:
    """Until workdir/metrics.jsonl holds a row, while every process in `procs` runs."""
    path = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + timeout
    while not (os.path.exists(path) and os.path.getsize(path)):
        assert all(p.poll() is None for p in procs), [p.returncode for p in procs]
        assert time.time() < deadline, f"no step done in {timeout} s"
        time.sleep(0.1)  # with a warm compilation cache the tiny config's steps take ~0.5 s


def metrics(workdir) -> dict:
    """step -> metrics row of workdir/metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return {row["step"]: row for row in map(json.loads, f)}


# Everything a step computes from its inputs; timings and throughput differ between runs.
DETERMINISTIC = ("reward_mean", "reward_std", "reward_min", "reward_max", "agreement_rate",
                 "mean_rounds", "kl", "clip_fraction", "entropy", "grad_norm", "loss",
                 "skipped_updates", "zero_advantage_fraction")


def assert_same_steps(a: dict, b: dict, steps) -> None:
    """Two runs' metrics (step -> row) agree on every deterministic key of `steps`."""
    for step in steps:
        for key in DETERMINISTIC:
            assert np.isclose(a[step][key], b[step][key], rtol=1e-5, atol=1e-6), \
                (step, key, a[step][key], b[step][key])

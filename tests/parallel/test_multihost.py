"""Two jax.distributed processes on 127.0.0.1 (gloo, 4 CPU devices each) match one process."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from negojax.parallel.mesh import make_mesh
from negojax.parallel.multihost import initialize_distributed, is_main_process
from negojax.parallel.sharding import LogicalRules
from negojax.rl.train_step import place_batch
from train_step_case import run_steps
from trainer_runs import PROXY_VARS, free_port

HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers")


def run_two_processes(out_path) -> None:
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    base.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                NO_PROXY="127.0.0.1,localhost")
    procs = [subprocess.Popen([sys.executable, os.path.join(HELPERS, "train_step_worker.py"),
                               "multihost", str(out_path)],
                              env={**base, "JAX_PROCESS_ID": str(i)}, cwd=HELPERS,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    try:
        outputs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        for p in procs:  # never leave a worker waiting on its peer
            if p.poll() is None:
                p.kill()
    for i, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"process {i} failed:\n{out[-3000:]}"


def test_two_processes_match_single_process(tmp_path):
    out = tmp_path / "multihost.npz"
    run_two_processes(out)
    result = np.load(out)
    assert int(result["processes"]) == 2 and int(result["devices"]) == 8

    rules = LogicalRules(make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    losses, params = run_steps(rules, lambda b: place_batch(b, rules))
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-5, atol=1e-6)
    for path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
        key = "/".join(str(k.key) for k in path)
        np.testing.assert_allclose(result[key], np.asarray(value), atol=1e-5, err_msg=key)


def test_single_process_defaults():
    initialize_distributed(False)  # a no-op: tests and laptops run without a coordinator
    assert is_main_process()


def test_coordinator_without_process_count_is_one_line_error(monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    monkeypatch.delenv("JAX_PROCESS_ID", raising=False)
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES and JAX_PROCESS_ID"):
        initialize_distributed(True)

"""Multi-process setup: jax.distributed, host-local batches -> global arrays, the main process.

Every process runs the same program over one global mesh. Launchers set JAX_COORDINATOR_ADDRESS
(host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID; on Cloud TPU none are needed and
jax finds its peers itself.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from negojax.parallel.sharding import LogicalRules

ENV_ADDRESS, ENV_COUNT, ENV_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"


def initialize_distributed(enabled: bool, *, timeout_s: int = 300) -> None:
    """Join the process group when `enabled`; call before anything touches jax devices."""
    if not enabled:
        return
    # CPU processes exchange collectives over gloo; accelerators ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    address = os.environ.get(ENV_ADDRESS)
    if not address:
        jax.distributed.initialize(initialization_timeout=timeout_s)
        return
    missing = [name for name in (ENV_COUNT, ENV_ID) if name not in os.environ]
    if missing:
        raise ValueError(f"{ENV_ADDRESS} is set but {' and '.join(missing)} is not; export it "
                         "(launch/local.sh sets all three)")
    jax.distributed.initialize(coordinator_address=address,
                               num_processes=int(os.environ[ENV_COUNT]),
                               process_id=int(os.environ[ENV_ID]),
                               initialization_timeout=timeout_s)


def host_local_to_global(batch, rules: LogicalRules):
    """This process's rows of a batch -> global arrays sharded over the data axes.

    Each process passes the rows its devices hold: process p's block is rows
    [p * B_local, (p + 1) * B_local) of the global batch when devices are ordered by process.
    """
    sharding = rules.sharding(("act_batch",))
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def allgather(x) -> np.ndarray:
    """Every process's `x` stacked on a new leading axis (x itself with one process)."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(np.asarray(x)))


def to_host(tree):
    """Global arrays -> numpy, whole, on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


def is_main_process() -> bool:
    """Only process 0 writes logs, metrics and checkpoints' metadata."""
    return jax.process_index() == 0

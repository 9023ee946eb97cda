"""Worker processes for the multi-device train-step tests (jax must start with their XLA_FLAGS).

  sharded OUT.json      8 fake devices: train step on mesh (2, 2, 2) vs one device, and the
                        vocab-parallel log-softmax vs the plain one
  multihost OUT.npz     one of several jax.distributed processes (env JAX_COORDINATOR_ADDRESS,
                        JAX_NUM_PROCESSES, JAX_PROCESS_ID); process 0 writes losses and params
"""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from negojax.parallel.multihost import host_local_to_global, initialize_distributed, \
    is_main_process


def sharded(out_path):
    from negojax.parallel.mesh import make_mesh
    from negojax.parallel.sharding import LogicalRules
    from negojax.parallel.vocab_parallel import vocab_parallel_logprobs
    from negojax.rl.train_step import place_batch
    from train_step_case import max_abs_diff, run_steps

    assert len(jax.devices()) == 8, jax.devices()
    single = LogicalRules(make_mesh(1, 1, 1, devices=jax.devices()[:1]))
    mesh8 = LogicalRules(make_mesh(2, 2, 2))
    losses1, params1 = run_steps(single, lambda b: place_batch(b, single))
    losses8, params8 = run_steps(mesh8, lambda b: place_batch(b, mesh8))
    wq = params8["layers"]["wq"].sharding.spec

    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.normal(size=(4, 10, 32)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(32, 128)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 128, (4, 10)), jnp.int32)
    logp, entropy = jax.jit(lambda h, w, t: vocab_parallel_logprobs(h, w, t, mesh8, chunk=4))(
        h, w, targets)
    ref = jax.nn.log_softmax(h @ w, axis=-1)
    ref_logp = jnp.take_along_axis(ref, targets[..., None], axis=-1)[..., 0]
    ref_entropy = -(jnp.exp(ref) * ref).sum(-1)
    grad = jax.grad(lambda w: vocab_parallel_logprobs(h, w, targets, mesh8)[0].sum())(w)
    ref_grad = jax.grad(lambda w: jnp.take_along_axis(jax.nn.log_softmax(h @ w, -1),
                                                      targets[..., None], -1).sum())(w)
    json.dump({
        "losses_1": losses1, "losses_8": losses8, "param_diff": max_abs_diff(params1, params8),
        "wq_spec": str(wq),
        "vocab_logp_diff": float(jnp.max(jnp.abs(logp - ref_logp))),
        "vocab_entropy_diff": float(jnp.max(jnp.abs(entropy - ref_entropy))),
        "vocab_grad_diff": float(jnp.max(jnp.abs(grad - ref_grad))),
    }, open(out_path, "w"))


def multihost(out_path):
    initialize_distributed(True, timeout_s=60)
    from jax.experimental import multihost_utils
    from negojax.parallel.mesh import make_mesh
    from negojax.parallel.sharding import LogicalRules
    from train_step_case import run_steps

    rules = LogicalRules(make_mesh(2, 2, 2))
    n, p = jax.process_count(), jax.process_index()

    def local_rows(batch):
        rows = batch.tokens.shape[0] // n
        return host_local_to_global(jax.tree.map(lambda v: v[p * rows:(p + 1) * rows], batch),
                                    rules)

    losses, params = run_steps(rules, local_rows)
    params = multihost_utils.process_allgather(params, tiled=True)
    if is_main_process():
        flat = {"/".join(str(k.key) for k in path): np.asarray(v)
                for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
        np.savez(out_path, losses=np.asarray(losses), devices=len(jax.devices()),
                 processes=n, **flat)
    jax.distributed.shutdown()


if __name__ == "__main__":
    {"sharded": sharded, "multihost": multihost}[sys.argv[1]](sys.argv[2])

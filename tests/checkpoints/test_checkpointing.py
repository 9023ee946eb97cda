"""TrainCheckpointer on its own: keep-last-K, restore onto shardings, fallback past a damaged
latest checkpoint, SIGTERM turned into a stop request (one process; a pod's is
tests/run/test_pod_preemption.py)."""
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from negojax.checkpoints import TrainCheckpointer


def _state(value: float) -> dict:
    params = {"w": jnp.full((4, 3), value), "b": jnp.arange(3.0) + value}
    return {"trainable": params, "opt_state": optax.adamw(1e-3).init(params),
            "step": jnp.asarray(int(value), jnp.int32),
            "rng": jax.random.key_data(jax.random.key(int(value)))}


def _abstract(meta):
    del meta
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        _state(0.0))


def test_keeps_last_k_and_restores_the_newest(tmp_path):
    ckpt = TrainCheckpointer(str(tmp_path), save_every=1, keep=2)
    for step in (1, 2, 3):
        ckpt.save(step, _state(float(step)), {"sampler": {"position": step}})
    ckpt.wait()
    assert ckpt.steps() == [2, 3]
    step, state, meta = ckpt.restore_latest(_abstract)
    assert step == 3 and meta["sampler"]["position"] == 3
    np.testing.assert_array_equal(state["trainable"]["w"], np.full((4, 3), 3.0))
    assert jax.tree.structure(state) == jax.tree.structure(_state(0.0))
    ckpt.close()


def test_damaged_latest_falls_back_to_the_one_before(tmp_path, capsys):
    ckpt = TrainCheckpointer(str(tmp_path), save_every=1, keep=3)
    for step in (1, 2):
        ckpt.save(step, _state(float(step)), {"step": step})
    ckpt.wait()
    for root, _, files in os.walk(tmp_path / "2" / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"not a checkpoint")
    step, state, meta = ckpt.restore_latest(_abstract)
    assert step == 1 and meta == {"step": 1}
    np.testing.assert_array_equal(state["trainable"]["b"], np.arange(3.0) + 1)
    assert "checkpoint 2" in capsys.readouterr().out
    assert ckpt.steps() == [1]  # the damaged one is set aside, so step 2 can be saved again
    assert (tmp_path / "2.damaged" / "state").is_dir()  # and nothing was deleted
    ckpt.save(2, _state(2.0), {"step": 2})
    ckpt.wait()
    assert ckpt.steps() == [1, 2]
    ckpt.close()


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    ckpt = TrainCheckpointer(str(tmp_path), save_every=5, keep=1)
    assert ckpt.restore_latest(_abstract) is None
    assert ckpt.should_save(5, last=False) and not ckpt.should_save(4, last=False)
    assert ckpt.should_save(4, last=True)
    ckpt.close()


def test_sigterm_requests_a_save_and_stop(tmp_path):
    ckpt = TrainCheckpointer(str(tmp_path), save_every=100, keep=1)
    before = signal.getsignal(signal.SIGTERM)
    ckpt.install_sigterm_handler()
    try:
        assert not ckpt.reached_preemption(2)
        os.kill(os.getpid(), signal.SIGTERM)
        assert ckpt.reached_preemption(3) and not ckpt.should_save(3, last=False)
    finally:
        ckpt.close()
    assert signal.getsignal(signal.SIGTERM) is before  # close() puts the old handler back

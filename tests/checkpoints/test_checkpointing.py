"""TrainCheckpointer on its own: keep-last-K, restore onto shardings, fallback past a damaged
latest checkpoint, SIGTERM and SIGINT turned into a stop request (one process; a pod's is
tests/run/test_pod_preemption.py), a full disk turned into one line."""
import errno
import logging
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from negojax.checkpoints import TrainCheckpointer
from negojax.checkpoints.orbax_checkpoint import _disk_full
from negojax.errors import RunStopped


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
    ckpt.install_signal_handlers()
    try:
        assert not ckpt.reached_preemption(2)
        os.kill(os.getpid(), signal.SIGTERM)
        assert ckpt.reached_preemption(3) and not ckpt.should_save(3, last=False)
    finally:
        ckpt.close()
    assert signal.getsignal(signal.SIGTERM) is before  # close() puts the old handler back


def test_sigint_requests_a_save_and_stop_and_a_second_one_stops_at_once(tmp_path):
    ckpt = TrainCheckpointer(str(tmp_path), save_every=100, keep=1)
    before = signal.getsignal(signal.SIGINT)
    ckpt.install_signal_handlers()
    try:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: no KeyboardInterrupt mid-step
        assert ckpt.reached_preemption(3) and ckpt.stop_signal == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C again: the user will not wait
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        ckpt.close()
    assert signal.getsignal(signal.SIGINT) is before


def _fill_the_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["save", "wait_until_finished"])
def test_a_full_disk_stops_the_run_in_one_line_keeping_the_checkpoint_before(
        tmp_path, monkeypatch, where):
    ckpt = TrainCheckpointer(str(tmp_path), save_every=1, keep=3)
    ckpt.save(1, _state(1.0), {"step": 1})
    ckpt.wait()
    state = _state(2.0)
    if where == "save":
        monkeypatch.setattr(ckpt._manager, "save", _fill_the_disk)
        save = lambda: ckpt.save(2, state, {"step": 2})  # noqa: E731
    else:  # an async save fails in the background and raises when waited for
        ckpt.save(2, state, {"step": 2})
        monkeypatch.setattr(ckpt._manager, "wait_until_finished", _fill_the_disk)
        save = ckpt.wait
    with pytest.raises(RunStopped) as err:
        save()
    monkeypatch.undo()
    ckpt.close()
    message = str(err.value)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    assert "\n" not in message and "no space left on device" in message
    assert str(tmp_path / "2") in message and f"about {nbytes} bytes" in message  # < 1 KiB
    assert "checkpoint 1 is kept" in message


def test_disk_full_is_found_wrapped_or_by_its_message():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as cause:
            raise RuntimeError("save failed") from cause
    except RuntimeError as wrapped:
        assert _disk_full(wrapped)
    assert _disk_full(ValueError("tensorstore: ... No space left on device [os error 28]"))
    assert not _disk_full(OSError(errno.EACCES, "Permission denied"))


def test_orbax_tracebacks_of_a_full_disk_are_not_logged(caplog):
    absl_logger = logging.getLogger("absl")  # orbax's background threads log through it
    for error in (OSError(errno.ENOSPC, "No space left on device"), ValueError("other")):
        absl_logger.error("save failed", exc_info=error)
    assert [r.exc_info[1] for r in caplog.records if r.name == "absl"] == [error]


def test_a_checkpoint_set_aside_as_damaged_still_counts_as_one(tmp_path):
    ckpt = TrainCheckpointer(str(tmp_path), save_every=1, keep=1)
    assert not ckpt.holds_any()
    (tmp_path / "3.damaged").mkdir()
    assert ckpt.holds_any()
    ckpt.close()

"""Training checkpoints with orbax: asynchronous saves every N steps and on SIGTERM or SIGINT,
last K kept, automatic resume from the newest checkpoint that restores.

On a pod a SIGTERM reaches some hosts only, and a save is a collective: every host must save the
same step. Under jax.distributed, JAX's preemption sync manager (on by default, CPU and gloo
included) catches SIGTERM on any host, tells the others through the coordination service and
picks the step at which all of them stop; a single process, without it, keeps its own flag.

A checkpoint holds two items: "state", a pytree of arrays (trainable params or LoRA adapters,
optimizer state, counters, the opponent snapshots) restored onto the shardings of an abstract
target, and "meta", a JSON dict (task sampler position, pool size, the settings it was written
with, anything small). Orbax writes into a temporary directory and renames it when complete, so
a save cut short never looks like a checkpoint; a complete-looking one whose files were damaged
fails to restore, and `restore_latest` then warns, moves it aside to `<step>.damaged` (nothing
is deleted) and falls back to the one before. A save that finds the disk full stops the run with
one line (RunStopped) saying what it needed and which checkpoint is kept.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import signal
import time
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from negojax.errors import RunStopped

log = logging.getLogger(__name__)


def _disk_full(error: Optional[BaseException]) -> bool:
    """Whether `error`, or one it was raised from, is ENOSPC (orbax and tensorstore wrap it, or
    keep only its message)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


class _NoDiskFullTracebacks(logging.Filter):
    """Orbax's background threads log a failed write with its traceback, several times over; a
    full disk is reported as one line instead (TrainCheckpointer._stop_if_disk_full)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (_disk_full(error) or "No space left on device" in record.getMessage())


logging.getLogger("absl").addFilter(_NoDiskFullTracebacks())  # orbax logs through absl


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


class TrainCheckpointer:
    def __init__(self, directory: str, *, save_every: int, keep: int, async_save: bool = True):
        self.directory = directory if "://" in directory else os.path.abspath(directory)
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "meta"))
        self._stop_signal = 0
        self._previous_handlers = {}
        self._saving = None  # (step, bytes of its arrays) of a save not yet known to be complete

    # ------------------------------------------------------------------ preemption
    def install_signal_handlers(self) -> None:
        """On SIGTERM (a TPU preemption notice, `kill`) or SIGINT (Ctrl-C), ask the loop to save
        and stop at the next step boundary instead of dying mid-step. A second SIGINT stops at
        once (KeyboardInterrupt), for a user who cannot wait for the step to end."""
        if jax.distributed.is_initialized():
            # jax.distributed.initialize installed JAX's preemption notifier as the SIGTERM
            # handler; a Python handler would replace it, and the notice would never leave
            # this host. SIGINT keeps Python's KeyboardInterrupt: the hosts would not agree on
            # a step to save.
            return

        def request_stop(signum, frame):
            del frame
            if signum == signal.SIGINT and self._stop_signal == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum
        self._previous_handlers = {s: signal.signal(s, request_stop)
                                   for s in (signal.SIGTERM, signal.SIGINT)}

    def uninstall_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            if handler is not None:  # None: one not set from Python, which cannot be put back
                signal.signal(signum, handler)
        self._previous_handlers = {}

    @property
    def stop_signal(self) -> int:
        """The signal that stopped the run: SIGINT or SIGTERM (JAX's preemption sync stops at a
        SIGTERM)."""
        return self._stop_signal or signal.SIGTERM

    def reached_preemption(self, step: int) -> bool:
        """Whether to save `step` and stop for a SIGTERM or SIGINT. One process: one reached it.
        Under jax.distributed: a SIGTERM reached any host, and `step` is the one JAX's
        preemption sync chose for all of them (the fastest host's last reported step + 1).

        Every host asks at the step it starts from and at every step boundary after, since the
        sync counts from the last step each host reported (0 before the first). Orbax's wrapper
        of `multihost_utils.reached_preemption_sync_point` answers False without jax.distributed.
        """
        return bool(self._stop_signal) or self._manager.reached_preemption(step)

    # ------------------------------------------------------------------ save / restore
    def should_save(self, step: int, last: bool) -> bool:
        periodic = self.save_every > 0 and step % self.save_every == 0
        return periodic or last

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Start saving `step` (returns while the arrays are written in the background). The
        previous save is finished first, as orbax would, so that a failure names its step."""
        self.wait()
        self._saving = (step, sum(x.nbytes for x in jax.tree.leaves(state)))
        try:
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as error:
            self._stop_if_disk_full(error)
            raise

    def wait(self) -> None:
        try:
            self._manager.wait_until_finished()
        except Exception as error:
            self._stop_if_disk_full(error)
            raise
        self._saving = None

    def _stop_if_disk_full(self, error: Exception) -> None:
        """A full disk is RunStopped, one line: what the save needed and which checkpoint is
        kept (orbax writes into a temporary folder, so the failed one never looks complete)."""
        if not _disk_full(error) or self._saving is None:
            return
        step, nbytes = self._saving
        self._saving = None
        kept = [s for s in self.steps() if s < step]
        previous = (f"checkpoint {kept[-1]} is kept; free space there, then rerun the same "
                    "command to resume" if kept else "there is no earlier checkpoint; free "
                    "space there, then rerun the same command to start over")
        raise RunStopped(
            f"stopped at step {step}: no space left on device for checkpoint {step} in "
            f"{os.path.join(self.directory, str(step))} (it needs about {_size(nbytes)}); "
            f"{previous}") from None

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def _meta(self, step: int) -> dict:
        return self._manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]

    def latest_meta(self) -> Optional[tuple[int, dict]]:
        """(step, meta) of the newest checkpoint whose meta reads, or None."""
        self._manager.reload()
        for step in reversed(self.steps()):
            try:
                return step, self._meta(step)
            except Exception:  # a damaged one: restore_latest reports it
                continue
        return None

    def restore_latest(self, abstract_state_for) -> Optional[tuple[int, Any, dict]]:
        """(step, state, meta) of the newest checkpoint that restores, or None when there is none.

        `abstract_state_for(meta)` gives the target pytree (jax.ShapeDtypeStruct leaves with
        shardings) for a checkpoint's meta, since its shape may depend on it (the opponent pool).
        A checkpoint that fails to restore is reported, moved aside and skipped.
        """
        self._manager.reload()
        for step in reversed(self.steps()):
            try:
                meta = self._meta(step)
                restored = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state_for(meta))))["state"]
            except Exception as error:  # orbax raises many types for damaged files
                first_line = (str(error).splitlines() or [type(error).__name__])[0][:300]
                log.warning("checkpoint step %d in %s is unreadable (%s: %s)", step,
                            self.directory, type(error).__name__, first_line)
                aside = self._set_aside(step)
                print(f"warning: checkpoint {step} in {self.directory} is unreadable "
                      f"({type(error).__name__}); kept as {aside}, falling back to the one before",
                      flush=True)
                continue
            return step, restored, meta
        return None

    def _set_aside(self, step: int) -> str:
        """Move a damaged checkpoint out of the manager's way (so its step can be saved again)
        without deleting anything; returns where it went."""
        source = os.path.join(self.directory, str(step))
        if "://" in source:  # an object store has no rename; the checkpoint stays where it is
            return source
        target = f"{source}.damaged"
        if os.path.exists(target):
            target = f"{source}.damaged-{int(time.time())}"
        os.rename(source, target)
        self._manager.reload()
        return target

    def holds_any(self) -> bool:
        """Whether this folder holds a checkpoint: one the manager lists, or one set aside as
        `<step>.damaged`."""
        if self.steps():
            return True
        if "://" in self.directory or not os.path.isdir(self.directory):
            return False  # an object store sets nothing aside: its damaged ones are listed
        return any(re.fullmatch(r"\d+\.damaged(-\d+)?", name)
                   for name in os.listdir(self.directory))

    def close(self) -> None:
        """Finish the last save (its error raised, a full disk as RunStopped) and stop orbax's
        threads; called on every way out of a run, so none is left to fail at exit."""
        try:
            self.wait()
            # Orbax's close does not wait for the sweep of temporary folders its init started
            # (only a save does): left running, it races whoever removes the folder next.
            self._manager._maybe_await_cleanup_tmp_directory()
        finally:
            self._manager.close()
            self.uninstall_signal_handlers()

"""Training checkpoints with orbax: asynchronous saves every N steps and on SIGTERM, last K kept,
automatic resume from the newest checkpoint that restores.

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
is deleted) and falls back to the one before.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class TrainCheckpointer:
    def __init__(self, directory: str, *, save_every: int, keep: int, async_save: bool = True):
        self.directory = directory if "://" in directory else os.path.abspath(directory)
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=("state", "meta"))
        self._sigterm_received = False
        self._previous_handler = None

    # ------------------------------------------------------------------ preemption
    def install_sigterm_handler(self) -> None:
        """On SIGTERM (a TPU preemption notice, `kill`), ask the loop to save and stop at the
        next step boundary instead of dying mid-step."""
        if jax.distributed.is_initialized():
            # jax.distributed.initialize installed JAX's preemption notifier as the SIGTERM
            # handler; a Python handler would replace it, and the notice would never leave
            # this host.
            return

        def request_stop(signum, frame):
            del signum, frame
            self._sigterm_received = True
        self._previous_handler = signal.signal(signal.SIGTERM, request_stop)

    def uninstall_sigterm_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._previous_handler = None

    def reached_preemption(self, step: int) -> bool:
        """Whether to save `step` and stop for a SIGTERM. One process: one reached it. Under
        jax.distributed: one reached any host, and `step` is the one JAX's preemption sync chose
        for all of them (the fastest host's last reported step + 1).

        Every host asks at the step it starts from and at every step boundary after, since the
        sync counts from the last step each host reported (0 before the first). Orbax's wrapper
        of `multihost_utils.reached_preemption_sync_point` answers False without jax.distributed.
        """
        return self._sigterm_received or self._manager.reached_preemption(step)

    # ------------------------------------------------------------------ save / restore
    def should_save(self, step: int, last: bool) -> bool:
        periodic = self.save_every > 0 and step % self.save_every == 0
        return periodic or last

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Start saving `step` (returns while the arrays are written in the background)."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def wait(self) -> None:
        self._manager.wait_until_finished()

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

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
        self.uninstall_sigterm_handler()

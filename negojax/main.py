"""The command line: python -m negojax.main --config=configs/<name>.py [--config.key=value ...]

--config.mode picks the job: train (GRPO self-play, resumable in --config.workdir), eval (the
evaluation suite and report) or chat (print the configured model's reply to --config.prompt).
Every configuration problem is reported as one line on stderr with exit status 2, before any
model is loaded.
"""
from __future__ import annotations

import difflib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from negojax.run.config import (ConfigError, RunStopped, load_config_file, validate_devices,
                                validate_static)

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<name>.py", lock_config=True)

USAGE_EXIT = 2
# A run stopped by a signal (SIGTERM: a preemption; SIGINT: Ctrl-C) saved its checkpoint and did
# not finish: 128 + the signal's number (143, 130), as schedulers and shells expect from a
# terminated job, so a restart is not mistaken for a success.
SIGNAL_EXIT_BASE = 128
INTERRUPTED_EXIT = SIGNAL_EXIT_BASE + 2
# The run stopped itself rather than train on made-up numbers (non-finite updates, failing judge).
STOPPED_EXIT = 3


def _die(message: str) -> None:
    print(f"negojax: {message}", file=sys.stderr)
    sys.exit(USAGE_EXIT)


def _config_path(argv) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _key_paths(config, prefix: str = "") -> set[str]:
    paths = set()
    for key, value in config.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if hasattr(value, "items"):
            paths |= _key_paths(value, path + ".")
    return paths


def check_overrides(argv) -> None:
    """Every --config.<key> names a key of the config file (one-line error otherwise)."""
    path = _config_path(argv)
    if path is None:
        raise ConfigError("no --config given; pass --config=configs/<name>.py")
    known = _key_paths(load_config_file(path))
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        key = arg[len("--config."):].split("=", 1)[0]
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean config.{close[0]}?" if close else ""
            raise ConfigError(f"config.{key}: unknown key in {path}{hint}")


def parse_flags(argv):
    """absl's parser with bad flags turned into one line and exit status 2."""
    try:
        check_overrides(argv)
        return flags.FLAGS(argv)
    except ConfigError as error:
        _die(str(error))
    except (flags.Error, ValueError, TypeError, AttributeError, KeyError) as error:
        _die(str(error).splitlines()[0] if str(error) else type(error).__name__)


def use_compilation_cache(path: str) -> None:
    """Persist compiled programs in `path` ('' leaves JAX's in-memory cache only)."""
    if not path:
        return
    import jax
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))


def _run_chat(config) -> None:
    import negojax
    from negojax.run.build import load_policy
    model = load_policy(config.model)
    try:
        reply = negojax.chat(model, [{"role": "user", "content": config.prompt}],
                             max_new_tokens=config.chat.max_new_tokens)
    except ValueError as error:  # a prompt past the model's context
        raise ConfigError(f"config.prompt: {error}") from None
    print(reply)


def main(argv) -> None:
    del argv
    # absl INFO carries orbax's per-file chatter; progress and summaries are printed instead.
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    try:
        validate_static(config)
        use_compilation_cache(config.jax_cache_dir)
        if config.mode == "chat":
            _run_chat(config)
            return
        from negojax.parallel.multihost import initialize_distributed
        try:
            initialize_distributed(config.distributed)
        except ValueError as error:  # a missing JAX_* variable
            raise ConfigError(f"config.distributed: {error}") from None
        import jax
        mesh_sizes = validate_devices(config, jax.device_count(), jax.process_count())
        from negojax.run import build
        build.check_judge(config)
        from negojax.parallel.multihost import is_main_process
        from negojax.run.lock import WorkdirLock
        lock = WorkdirLock(config.workdir)
        if is_main_process():
            lock.acquire()
        try:
            stopped_by = _run(config, mesh_sizes)
        finally:
            lock.release()
    except ConfigError as error:
        _die(str(error))
    except RunStopped as error:  # the run's own decision, one line
        print(f"negojax: {error}", file=sys.stderr)
        # An export cut short by a signal (train.Interrupted) exits as that signal's stop does.
        sys.exit(getattr(error, "exit_status", STOPPED_EXIT))
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves and stops)
        print("negojax: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT)
    if stopped_by:
        sys.exit(SIGNAL_EXIT_BASE + stopped_by)


def _run(config, mesh_sizes: dict) -> int:
    """Train or evaluate; the signal that stopped training at a checkpoint, or 0."""
    from negojax.run import build
    if config.mode == "train":
        from negojax.run.train import Trainer
        return Trainer(build.build_training(config, mesh_sizes)).train()
    from negojax.run.evaluate import evaluate
    evaluate(build.build_evaluation(config, mesh_sizes))
    return 0


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()

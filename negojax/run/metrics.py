"""Per-step metrics: the console progress bar, workdir/metrics.jsonl, TensorBoard event files
(tensorboardX, no TensorFlow) and Weights & Biases when enabled (the `wandb` extra). Only the main
process writes; the others get a logger that does nothing (metrics cover every host). In an
object store both files grow by batched appends (negojax.storage.Appender); `flush()` uploads
what is held, which the loop does before every checkpoint.

metrics.jsonl holds one JSON object per step; the report (negojax.eval.report) reads these keys.
"""
from __future__ import annotations

from typing import Optional

from negojax import jsonl, storage

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
METRIC_KEYS = (
    "step", "reward_mean", "reward_std", "reward_min", "reward_max", "agreement_rate",
    "mean_rounds", "kl", "clip_fraction", "entropy", "grad_norm", "skipped_updates",
    "rollout_tokens_per_s", "train_tokens_per_s", "time_rollout_s", "time_judge_s",
    "time_update_s", "zero_advantage_fraction", "judge_calls", "judge_failures",
    "samples_dropped")
CONSOLE_KEYS = ("reward_mean", "agreement_rate", "mean_rounds", "kl", "grad_norm",
                "judge_failures")


def _import_summary_writer():
    """tensorboardX's SummaryWriter, imported without torch: tensorboardX tries `import torch`
    only to accept torch tensors (we log floats), and importing torch costs 5-20 s per run."""
    import sys
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class _EventFiles:
    """tensorboardX's writer factory for gs://: event files through storage.Appender.
    tensorboardX's own GCS writer re-uploads the whole file at every flush and needs
    google-cloud-storage; this one appends, and only `flush_all` forces an upload."""

    def __init__(self):
        self.open_files: list[storage.Appender] = []

    def open(self, path: str) -> "_EventFile":
        appender = storage.Appender(path)
        self.open_files.append(appender)
        return _EventFile(appender, on_close=self.open_files.remove)

    def directory_check(self, path: str) -> None:
        del path  # object stores need no folders

    def flush_all(self) -> None:
        for appender in self.open_files:
            appender.flush()


class _EventFile:
    def __init__(self, appender: storage.Appender, on_close):
        self._appender, self._on_close = appender, on_close

    def write(self, data: bytes) -> None:
        self._appender.write(data)

    def flush(self) -> None:
        """tensorboardX flushes after every event; the appender batches uploads itself."""

    def close(self) -> None:
        self._appender.close()
        self._on_close(self._appender)


_GCS_EVENT_FILES = _EventFiles()


def _register_event_files() -> None:
    from tensorboardX import record_writer
    record_writer.register_writer_factory("gs", _GCS_EVENT_FILES)


class MetricsLogger:
    def __init__(self, workdir: str, *, total_steps: int, start_step: int, enabled: bool = True,
                 log_every: int = 1, wandb_project: Optional[str] = None, run_config=None):
        self.enabled = enabled
        self.log_every = log_every
        self.metrics_path = storage.join(workdir, METRICS_FILE)
        if not enabled:
            return
        self._metrics = jsonl.Writer(self.metrics_path)
        SummaryWriter = _import_summary_writer()
        _register_event_files()
        from tqdm import tqdm
        self._tb = SummaryWriter(storage.join(workdir, TENSORBOARD_DIR), purge_step=start_step + 1)
        self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                         dynamic_ncols=True)
        self._wandb = None
        if wandb_project:
            import wandb  # the `wandb` extra; validation has checked it is installed
            # wandb keeps its files in a local folder; for a bucket workdir, its default one.
            self._wandb = wandb.init(project=wandb_project, resume="allow", config=run_config,
                                     dir=None if storage.is_remote(workdir) else workdir)

    def phase(self, step: int, text: str) -> None:
        """Show what the step is doing now (rollout turn k of N, judge, update, checkpoint)."""
        if self.enabled:
            self._bar.set_description_str(f"train step {step}: {text}", refresh=True)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = jsonl.plain({"step": step, **metrics})
        self._metrics.write([row])
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._tb.add_scalar(key, value, step)
        self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(row, step=step)
        self._bar.set_description_str("train", refresh=False)
        self._bar.update(1)
        self._bar.set_postfix({k: f"{row[k]:.3g}" for k in CONSOLE_KEYS
                               if isinstance(row.get(k), (int, float))}, refresh=False)
        if step % self.log_every == 0:
            self._bar.write(" ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float)
                                     else f"{k}={row[k]}" for k in METRIC_KEYS if k in row))

    def flush(self) -> None:
        """Everything logged so far is in storage (object stores hold writes back)."""
        if self.enabled:
            self._metrics.flush()
            self._tb.flush()
            _GCS_EVENT_FILES.flush_all()

    def close(self) -> None:
        if not self.enabled:
            return
        self._bar.close()
        self._metrics.close()
        self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()

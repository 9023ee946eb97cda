"""Per-step metrics: the console progress bar, workdir/metrics.jsonl, TensorBoard event files
(tensorboardX, no TensorFlow) and Weights & Biases when enabled (the `wandb` extra). Only the main
process writes; the others get a logger that does nothing (metrics cover every host).

metrics.jsonl holds one JSON object per step; the report (negojax.eval.report) reads these keys.
"""
from __future__ import annotations

import os
from typing import Optional

from negojax import jsonl

METRICS_FILE = "metrics.jsonl"
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


class MetricsLogger:
    def __init__(self, workdir: str, *, total_steps: int, start_step: int, enabled: bool = True,
                 log_every: int = 1, wandb_project: Optional[str] = None, run_config=None):
        self.enabled = enabled
        self.log_every = log_every
        self.metrics_path = os.path.join(workdir, METRICS_FILE)
        if not enabled:
            return
        SummaryWriter = _import_summary_writer()
        from tqdm import tqdm
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start_step + 1)
        self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                         dynamic_ncols=True)
        self._wandb = None
        if wandb_project:
            import wandb  # the `wandb` extra; validation has checked it is installed
            self._wandb = wandb.init(project=wandb_project, dir=workdir, resume="allow",
                                     config=run_config)

    def phase(self, step: int, text: str) -> None:
        """Show what the step is doing now (rollout turn k of N, judge, update, checkpoint)."""
        if self.enabled:
            self._bar.set_description_str(f"train step {step}: {text}", refresh=True)

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = jsonl.plain({"step": step, **metrics})
        jsonl.append(self.metrics_path, [row])
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

    def close(self) -> None:
        if not self.enabled:
            return
        self._bar.close()
        self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()

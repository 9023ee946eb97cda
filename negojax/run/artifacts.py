"""What a finished training run leaves in its workdir besides checkpoints and metrics: the
exported model, transcripts.html and the report, and the summary of where everything went."""
from __future__ import annotations

import json
import os

import jax
import numpy as np

import negojax
from negojax import storage
from negojax.api import Model
from negojax.eval.report import write_run_report
from negojax.models import lora
from negojax.negotiation import view
from negojax.run.build import EXPORT_DIR, TRAINING_INFO_FILE
from negojax.run.config import RunStopped
from negojax.run.metrics import METRICS_FILE, TENSORBOARD_DIR


def export_policy(workdir: str, model: Model, training_info: dict) -> str:
    """workdir/export: an HF directory, LoRA adapters merged into the base, with
    `training_info` (which setting trained it) in its training.json. Weights holding NaN or
    Inf are refused (RunStopped, one line), so no broken model is ever exported."""
    params, config = model.params, model.config
    broken = ["/".join(str(getattr(k, "key", k)) for k in path)
              for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
              if not np.isfinite(np.asarray(leaf, np.float32)).all()]
    if broken:
        raise RunStopped(f"not exporting: {len(broken)} weight tensor(s) hold NaN or Inf "
                         f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}); resume "
                         "from an earlier checkpoint with a lower optim.lr")
    if "lora" in params["layers"]:
        params = lora.merge(params, config)
        config = config.replace(lora_scale=1.0)
    out = storage.join(workdir, EXPORT_DIR)
    # The model and its training.json become the export together, or not at all (a SIGTERM or a
    # full disk in between leaves the earlier export as it was, locally and in a bucket).
    with storage.staged_dir(out) as staging:
        negojax.export_hf(Model(config, params, model.tokenizer, model.source_dir), staging)
        storage.write_text(os.path.join(staging, TRAINING_INFO_FILE),
                           json.dumps(training_info, indent=1))
    return out


def finish_training(workdir: str, model: Model, checkpoints: str, training_info: dict) -> dict:
    """Export, transcripts.html and the report; prints and returns {what: path}."""
    print("finishing: export, transcripts.html, report", flush=True)
    written = {"checkpoints": checkpoints, "export": export_policy(workdir, model, training_info),
               "metrics": storage.join(workdir, METRICS_FILE),
               "transcripts": storage.join(workdir, view.TRANSCRIPTS_FILE),
               "tensorboard": storage.join(workdir, TENSORBOARD_DIR),
               "transcripts_html": view.write_html(workdir),
               "report": write_run_report(workdir)}
    print("wrote:\n" + "\n".join(f"  {k:17s} {v}" for k, v in written.items()), flush=True)
    return written

"""What a finished training run leaves in its workdir besides checkpoints and metrics: the
exported model, transcripts.html and the report, and the summary of where everything went."""
from __future__ import annotations

import os

import negojax
from negojax.api import Model
from negojax.eval.report import write_run_report
from negojax.models import lora
from negojax.negotiation import view
from negojax.run.build import EXPORT_DIR
from negojax.run.metrics import METRICS_FILE


def export_policy(workdir: str, model: Model) -> str:
    """workdir/export: an HF directory, LoRA adapters merged into the base."""
    params, config = model.params, model.config
    if "lora" in params["layers"]:
        params = lora.merge(params, config)
        config = config.replace(lora_scale=1.0)
    out = os.path.join(workdir, EXPORT_DIR)
    negojax.export_hf(Model(config, params, model.tokenizer, model.source_dir), out)
    return out


def finish_training(workdir: str, model: Model, checkpoints: str) -> dict:
    """Export, transcripts.html and the report; prints and returns {what: path}."""
    written = {"checkpoints": checkpoints, "export": export_policy(workdir, model),
               "metrics": os.path.join(workdir, METRICS_FILE),
               "transcripts": os.path.join(workdir, view.TRANSCRIPTS_FILE),
               "tensorboard": os.path.join(workdir, "tensorboard"),
               "transcripts_html": view.write_html(workdir),
               "report": write_run_report(workdir)}
    print("wrote:\n" + "\n".join(f"  {k:17s} {v}" for k, v in written.items()), flush=True)
    return written

"""A run whose workdir is a gs:// URL: everything a local run writes lands in the bucket (none of
it in a local folder named `gs:`), the run resumes from the bucket, and its export loads from
there, in train and in eval mode. Against a real GCS API on 127.0.0.1 (the gcp-storage-emulator package), with the tiny
config and a real HTTP judge, so the judge cache is written too."""
import json
import os
import re

import fsspec
import jax
import numpy as np
import pytest

import negojax
from gcs_emulator import BUCKET, gcs_emulator
from openai_server import start_server, stop_server, varied_judge
from shipped_configs import REPO
from trainer_runs import assert_same_steps, metrics, run_main


def _layout(names) -> set:
    """Relative file names with what differs between two identical runs folded: TensorBoard
    files are named by time and host (and a resumed run adds one), orbax names its array
    chunks at random."""
    folded = set()
    for name in names:
        name = re.sub(r"^tensorboard/events\.out\.tfevents\..*", "tensorboard/<events>", name)
        name = re.sub(r"/(d|ocdbt\.process_\d+/d)/[0-9a-f]+$", r"/\1/<chunk>", name)
        folded.add(name)
    return folded


@pytest.fixture()
def gcs(monkeypatch):
    with gcs_emulator() as variables:
        for name, value in variables.items():  # for this process and the runs it starts
            monkeypatch.setenv(name, value)
        fsspec.filesystem("gs").clear_instance_cache()
        yield fsspec.filesystem("gs", use_listings_cache=False)  # the runs write the bucket


def test_gs_workdir_holds_what_a_local_run_writes_resumes_and_exports(gcs, tmp_path):
    server = start_server(varied_judge)
    judge = ("--config.judge.kind=http", "--config.judge.model=judge",
             f"--config.judge.base_url={server.url}")
    remote = f"gs://{BUCKET}/run"
    try:
        run_main("tiny_test", tmp_path / "local", "--config.train.steps=3", *judge)
        run_main("tiny_test", remote, "--config.train.steps=2", *judge)
        resumed = run_main("tiny_test", remote, "--config.train.steps=3", *judge)
        bucket_files = set(gcs.find(f"{BUCKET}/run"))
        run_main("tiny_test", remote, "--config.mode=eval", "--config.eval.decodings=greedy",
                 "--config.eval.capability_prompts=1", "--config.eval.reasoning_problems=1",
                 *judge)
    finally:
        stop_server(server)
    assert "resuming from checkpoint step 2" in resumed.stdout, resumed.stdout[-2000:]
    assert not os.path.exists(os.path.join(REPO, "gs:"))

    local = tmp_path / "local"
    on_disk = {str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()}
    in_bucket = {name[len(f"{BUCKET}/run/"):] for name in bucket_files}
    assert any(n.startswith("judge_cache/") for n in on_disk)
    assert any(n.startswith("checkpoints/3/") for n in on_disk)
    assert _layout(in_bucket) == _layout(on_disk)
    assert not any(".part-" in n or n.endswith(".partial") for n in in_bucket)

    with gcs.open(f"{BUCKET}/run/metrics.jsonl") as f:
        from_bucket = {row["step"]: row for row in map(json.loads, f.read().decode().splitlines())}
    assert sorted(from_bucket) == [1, 2, 3]
    assert_same_steps(metrics(local), from_bucket, [1, 2, 3])

    exported = negojax.load_model(f"{remote}/export")
    reference = negojax.load_model(str(local / "export"))
    assert exported.tokenizer is not None
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                         rtol=1e-5, atol=1e-6),
                 exported.params, reference.params)

    # Eval mode reads the export from the bucket and writes its results and report there.
    with gcs.open(f"{BUCKET}/run/eval_results.json") as f:
        results = json.load(f)
    assert results["models"]["A"] == f"negotiation-trained (3 steps): {remote}/export"
    assert "Pairwise CA win rate" in gcs.cat(f"{BUCKET}/run/report.html").decode()

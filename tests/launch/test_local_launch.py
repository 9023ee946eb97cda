"""launch/local.sh runs the real trainer as 2 jax.distributed processes (gloo collectives over
127.0.0.1, 2 CPU devices each) through two training steps of the tiny config: the pod code path.
The slowest test of the suite."""
import os
import subprocess

import pytest

from trainer_runs import REPO, env, metrics


@pytest.mark.slow
def test_local_sh_trains_two_processes_for_two_steps(tmp_path):
    workdir = tmp_path / "run"
    proc = subprocess.run(
        ["bash", "launch/local.sh"], cwd=REPO, capture_output=True, text=True, timeout=900,
        env=env(NUM_PROCESSES="2", DEVICES_PER_PROCESS="2", WORKDIR=str(workdir),
                NEGOJAX_CONFIG="configs/tiny_test.py", EXTRA_ARGS="--config.train.steps=2"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "[process 0]" in out and "[process 1]" in out
    rows = metrics(workdir)  # written by process 0 only: one line per step
    assert sorted(rows) == [1, 2]
    with open(workdir / "metrics.jsonl", encoding="utf-8") as f:
        assert len(f.readlines()) == 2
    # Both hosts' prompts are in the batch: 2 prompts x G 2 dialogues per step.
    with open(workdir / "transcripts.jsonl", encoding="utf-8") as f:
        assert len(f.readlines()) == 2 * 4 // 2  # process 0 writes its own host's dialogues
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]
    assert os.path.exists(workdir / "export" / "model.safetensors")

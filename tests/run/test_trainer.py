"""The training loop as users run it (real processes, the tiny config): resume after SIGTERM gives
the same metrics as an uninterrupted run, and a damaged latest checkpoint falls back to the one
before."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from shipped_configs import REPO
from trainer_runs import (assert_same_steps, env, main_args, metrics, one_line_error, run_main,
                          start_main, wait_for_first_step)

# A pool of 2 opponent snapshots, refreshed every step: the checkpoint must carry the pool and
# the opponent drawn per step must repeat after a restart.
POOL = ("--config.rollout.opponent=pool", "--config.rollout.opponent_pool_size=2")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    proc = run_main("tiny_test", workdir, "--config.train.steps=3", "--config.train.eval_every=3",
                    *POOL)
    return workdir, proc


def test_uninterrupted_run_leaves_its_outputs(uninterrupted):
    workdir, proc = uninterrupted
    rows = metrics(workdir)
    assert sorted(rows) == [1, 2, 3]
    assert "eval_agreement_rate" in rows[3] and "eval_agreement_rate" not in rows[2]
    # without dynamic sampling every group trains, signal or not
    assert all(r["groups_trained"] == r["groups_sampled"] == 2 for r in rows.values())
    assert "eval_agreement_rate_2p" in rows[3]  # the first held-out tasks have two parties
    with open(workdir / "transcripts.jsonl", encoding="utf-8") as f:
        dialogues = [json.loads(line) for line in f]
    for step, row in rows.items():
        counts = {len(d["personas"]) for d in dialogues if d["step"] == step}
        assert {k for k in row if re.fullmatch(r"(agreement_rate|reward_mean)_\dp", k)} == \
            {f"{key}_{n}p" for n in counts for key in ("agreement_rate", "reward_mean")}
    for name in ("metrics.jsonl", "transcripts.jsonl", "transcripts.html", "report.html",
                 "export/config.json", "export/model.safetensors", "tensorboard"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert sorted(os.listdir(workdir / "checkpoints"))[-1] == "3"
    assert "wrote:" in proc.stdout


def test_eval_mode_compares_the_export_with_the_base_and_writes_the_report(uninterrupted):
    workdir, _ = uninterrupted
    proc = run_main("tiny_test", workdir, "--config.mode=eval", "--config.eval.decodings=greedy",
                    "--config.eval.capability_prompts=1", "--config.eval.reasoning_problems=1",
                    "--config.eval.process_similarity=judge")
    with open(workdir / "eval_results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert results["models"]["A"].endswith("export") and results["conflict"]["greedy"]["n"] == 2
    assert results["conflict_by_parties"]["B"]["greedy"]["2"]["n"] == 2
    assert set(results["win_rates"]) == {"conflict", "open_ended"}
    assert set(results["capability"]) >= {"instructions", "reasoning"}
    assert results["process"]["A"]["greedy"]["n"] == results["process"]["B"]["greedy"]["n"] == 2
    assert results["process"]["A"]["greedy"]["similarity"] == "judge"  # the tiny local judge scored
    assert "Pairwise CA win rate" in (workdir / "report.html").read_text()
    assert "process_movement.png" in (workdir / "report.html").read_text()
    assert "eval_results" in proc.stdout
    # The progress bar names each phase and counts items: 2 models x (2 greedy dialogues, 2
    # open-ended answers, 1 instruction prompt, 1 reasoning problem).
    for phase in ("model A, greedy dialogues", "judge: CA scores", "judge: pairwise comparisons",
                  "model B, single-turn answers", "report"):
        assert f"eval: {phase}" in proc.stderr, phase
    assert "12/12" in proc.stderr


def test_sigterm_saves_and_the_restart_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    reference = metrics(uninterrupted[0])
    proc = start_main("tiny_test", tmp_path, "--config.train.steps=3", *POOL)
    wait_for_first_step(tmp_path, [proc])
    os.kill(proc.pid, signal.SIGTERM)  # during step 2: it finishes the step, saves, exits
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 143, out[-3000:]  # preempted: a scheduler must not see success
    stopped_at = max(metrics(tmp_path))
    assert stopped_at < 3 and f"SIGTERM: saved checkpoint {stopped_at}" in out, out[-3000:]
    assert not (tmp_path / "export").exists()

    resumed = run_main("tiny_test", tmp_path, "--config.train.steps=3", *POOL)
    assert f"resuming from checkpoint step {stopped_at}" in resumed.stdout
    after = metrics(tmp_path)
    assert sorted(after) == [1, 2, 3]
    assert_same_steps(reference, after, range(stopped_at + 1, 4))


def test_ctrl_c_saves_and_stops_as_sigterm_does(tmp_path):
    proc = start_main("tiny_test", tmp_path, "--config.train.steps=3")
    wait_for_first_step(tmp_path, [proc])
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 130 and "Traceback" not in out, out[-3000:]
    stopped_at = max(metrics(tmp_path))
    assert f"SIGINT: saved checkpoint {stopped_at}" in out, out[-3000:]
    assert str(stopped_at) in os.listdir(tmp_path / "checkpoints")
    assert not (tmp_path / "run.lock").exists()


def _main_with_fault(fault: str, workdir, *flags) -> subprocess.CompletedProcess:
    """python -m negojax.main as run_main runs it, after `fault` (Python code) patched it."""
    argv = ["negojax.main", *main_args("tiny_test", workdir, *flags)[3:]]
    code = f"import sys\n{fault}\nsys.argv = {argv!r}\nfrom negojax.main import run\nrun()"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=600)


def test_ctrl_c_while_the_model_loads_is_one_line(tmp_path):
    proc = _main_with_fault("""
import os, signal
from negojax.run import build
load = build.load_policy
def interrupted(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    return load(*args, **kwargs)
build.load_policy = interrupted""", tmp_path)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == ["negojax: interrupted"], proc.stderr[-3000:]
    assert not (tmp_path / "run.lock").exists()


def test_sigterm_during_the_export_keeps_the_checkpoint_and_a_rerun_exports(tmp_path):
    proc = _main_with_fault("""
import os, signal, negojax
export = negojax.export_hf
def interrupted(model, out):
    export(model, out)
    os.kill(os.getpid(), signal.SIGTERM)  # before training.json: the export is not whole
negojax.export_hf = interrupted""", tmp_path, "--config.train.steps=1")
    assert proc.returncode == 143 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "negojax: interrupted during the export; checkpoint 1 is kept; rerun the same command "
        "to export")
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith("export")]
    assert not (tmp_path / "run.lock").exists()
    rerun = run_main("tiny_test", tmp_path, "--config.train.steps=1")
    assert "resuming from checkpoint step 1" in rerun.stdout and "wrote:" in rerun.stdout
    for name in ("config.json", "model.safetensors", "training.json"):
        assert (tmp_path / "export" / name).exists(), name
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith("export")) == \
        ["export"]


def test_a_full_disk_at_a_checkpoint_ends_the_run_in_one_line(tmp_path):
    proc = _main_with_fault("""
import errno
import orbax.checkpoint as ocp
save = ocp.CheckpointManager.save
def disk_full_from_step_2(self, step, *args, **kwargs):
    if step >= 2:
        raise OSError(errno.ENOSPC, "No space left on device")
    return save(self, step, *args, **kwargs)
ocp.CheckpointManager.save = disk_full_from_step_2""", tmp_path, "--config.train.steps=3")
    assert proc.returncode == 3, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and "cannot schedule" not in proc.stderr, \
        proc.stderr[-3000:]
    assert last.startswith("negojax: stopped at step 2: no space left on device for checkpoint 2 "
                           f"in {tmp_path / 'checkpoints' / '2'} (it needs about "), last
    assert "checkpoint 1 is kept" in last and not (tmp_path / "run.lock").exists()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]


def test_corrupted_latest_checkpoint_falls_back_to_the_one_before(uninterrupted):
    workdir, _ = uninterrupted
    reference = metrics(workdir)
    latest = workdir / "checkpoints" / "3"
    damaged = 0
    for root, _, files in os.walk(latest / "state"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\x00garbage")
            damaged += 1
    assert damaged
    resumed = run_main("tiny_test", workdir, "--config.train.steps=3", *POOL)
    assert "checkpoint 3" in resumed.stdout and "unreadable" in resumed.stdout
    assert "resuming from checkpoint step 2" in resumed.stdout
    assert (workdir / "checkpoints" / "3.damaged" / "state").is_dir()  # kept, not deleted
    after = metrics(workdir)
    assert sorted(after) == [1, 2, 3]
    assert_same_steps(reference, after, [3])  # step 3 redone from checkpoint 2, identically


def _checkpoint_files(workdir) -> dict:
    root = workdir / "checkpoints"
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("flag, key", [("--config.lora.rank=4", "config.lora.rank=0"),
                                       ("--config.seed=7", "config.seed=0")])
def test_resume_with_other_settings_is_refused_and_deletes_nothing(uninterrupted, flag, key):
    workdir, _ = uninterrupted
    files, rows = _checkpoint_files(workdir), metrics(workdir)
    line = one_line_error(run_main("tiny_test", workdir, "--config.train.steps=4", *POOL, flag,
                                   status=2))
    assert key in line and "--config.workdir" in line and "resume it with" in line, line
    assert _checkpoint_files(workdir) == files and metrics(workdir) == rows


def test_a_resume_over_torn_and_damaged_log_lines_keeps_every_readable_row_and_the_file(
        uninterrupted, tmp_path):
    """A crash mid-write tears the last line of metrics.jsonl, a bad disk damages its first; the
    resumed run keeps the readable row, and the file as it was is kept whole beside it (the
    lines were dropped for good before)."""
    workdir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], workdir)
    lines = (workdir / "metrics.jsonl").read_text().splitlines(keepends=True)
    hurt = "{\"step\": 1, garbage\n" + lines[1] + lines[2][:len(lines[2]) // 2]
    (workdir / "metrics.jsonl").write_text(hurt)
    proc = run_main("tiny_test", workdir, "--config.train.steps=3", "--config.train.eval_every=3",
                    *POOL)
    assert "resuming from checkpoint step 3" in proc.stdout
    (aside,) = workdir.glob("metrics.jsonl.damaged-*")
    assert aside.read_text() == hurt
    assert f"metrics.jsonl has unreadable line(s) 1, 3; the file as it was is kept as {aside}" \
        in proc.stdout
    assert sorted(metrics(workdir)) == [2]


def test_logs_beside_damaged_checkpoints_only_are_refused_and_kept(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward_mean": 1.0}) + "\n")
    (tmp_path / "checkpoints" / "1.damaged").mkdir(parents=True)  # all a crash left of a run
    line = one_line_error(run_main("tiny_test", tmp_path, status=2))
    assert "holds the metrics of an earlier run" in line, line
    assert metrics(tmp_path) == {1: {"step": 1, "reward_mean": 1.0}}


def test_logs_of_steps_no_checkpoint_saved_are_moved_aside_and_the_run_starts_fresh(tmp_path):
    """A first checkpoint that failed (a full disk, say) leaves logs and no checkpoint: once the
    cause is fixed, the rerun starts over and keeps the old logs beside."""
    earlier = json.dumps({"step": 1, "earlier": True}) + "\n"
    (tmp_path / "metrics.jsonl").write_text(earlier)
    proc = run_main("tiny_test", tmp_path, "--config.train.steps=1")
    [aside] = tmp_path.glob("metrics.jsonl.unsaved-*")
    assert aside.read_text() == earlier
    assert f"holds logs of steps no checkpoint saved; moved aside to {aside}" in proc.stdout
    assert list(metrics(tmp_path)) == [1] and "earlier" not in metrics(tmp_path)[1]


def test_a_second_run_on_the_same_workdir_stops_at_once(tmp_path):
    first = start_main("tiny_test", tmp_path, "--config.train.steps=3")
    lock = tmp_path / "run.lock"
    deadline = time.time() + 300
    while not lock.exists():
        assert first.poll() is None and time.time() < deadline, first.stdout.read()
        time.sleep(0.2)
    started = time.time()
    second = run_main("tiny_test", tmp_path, "--config.train.steps=3", status=2)
    line = one_line_error(second)
    assert f"in use by pid {first.pid}" in line, line
    assert time.time() - started < 60
    out, _ = first.communicate(timeout=400)
    assert first.returncode == 0, out[-3000:]
    assert sorted(metrics(tmp_path)) == [1, 2, 3] and not lock.exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    import socket
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (tmp_path / "run.lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": int(dead.stdout), "started": "earlier"}))
    proc = run_main("tiny_test", tmp_path, "--config.train.steps=1")
    assert f"taking over {tmp_path / 'run.lock'} from pid {int(dead.stdout)}" in proc.stdout
    assert sorted(metrics(tmp_path)) == [1] and not (tmp_path / "run.lock").exists()


def test_train_batch_fills_microbatches_in_turn():
    """5 packed rows in 8 rows of 4 microbatches (microbatch i = rows i, i + 4): microbatches 0-2
    hold them and microbatch 3 is padding only, which the step skips."""
    from negojax.rl.packing import pack_sequences

    def seq(n, g):
        mask = np.zeros(n, bool)
        mask[2:] = True
        return SimpleNamespace(tokens=np.full(n, g + 1, np.int32), loss_mask=mask,
                               old_logp=np.where(mask, -1.0, 0.0).astype(np.float32))
    # Distinct 6-token sequences in 8-token rows: one per row, in order.
    packed = pack_sequences([seq(6, g) for g in range(5)], np.arange(5, dtype=np.float32), (8,),
                            parity_length=100)
    batch = packed.padded(8, microbatches=4).with_loss_positions(8)
    assert batch.tokens[:, 0].tolist() == [1, 3, 5, 0, 2, 4, 0, 0]
    live_rows = batch.tokens[:, 0] > 0
    assert (batch.advantages[live_rows, :6] == batch.tokens[live_rows, :1] - 1).all()
    live = batch.loss_mask.reshape(2, 4, 8).swapaxes(0, 1).any(axis=(1, 2))
    assert live.tolist() == [True, True, True, False]
    assert batch.loss_positions[0].tolist() == [2, 3, 4, 5, 0, 0, 0, 0]
    assert batch.segment_ids[0].tolist() == [1] * 6 + [0, 0]


def test_non_finite_updates_stop_the_run_checkpointed(tmp_path):
    """lr 1e30 blows the weights up after one update; every later update is non-finite and
    skipped, and the third in a row stops the run with its last good weights saved."""
    proc = run_main("tiny_test", tmp_path, "--config.train.steps=8", "--config.optim.lr=1e30",
                    status=3)
    last = proc.stderr.strip().splitlines()[-1]  # below the progress bar, one line
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert last.startswith("negojax: stopped at step 4: its last 3 updates were not finite"), last
    rows = metrics(tmp_path)
    assert sorted(rows) == [1, 2, 3, 4] and [rows[s]["skipped_updates"] for s in rows] == \
        [0, 1, 2, 3]
    assert "4" in os.listdir(tmp_path / "checkpoints") and not (tmp_path / "export").exists()


def test_export_refuses_non_finite_weights(tmp_path):
    import negojax
    from negojax.run.artifacts import export_policy
    from negojax.run.config import RunStopped
    model = negojax.load_model("smollm2-135m", random_init=True)
    model.params["layers"]["wq"] = model.params["layers"]["wq"].at[0, 0, 0, 0].set(np.nan)
    with pytest.raises(RunStopped, match=r"not exporting: 1 weight tensor\(s\) hold NaN or Inf "
                                         r"\(layers/wq\)"):
        export_policy(str(tmp_path), model, {"setting": "negotiation"})
    assert not (tmp_path / "export").exists()


def test_an_export_cut_short_leaves_the_earlier_one_whole_and_no_partial_folder(
        tmp_path, monkeypatch):
    import negojax
    from negojax.run.artifacts import export_policy
    model = negojax.load_model("smollm2-135m", random_init=True, overrides=dict(
        hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        head_dim=8))
    export_policy(str(tmp_path), model, {"run": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()}
    export = negojax.export_hf

    def cut_short(*args):
        export(*args)
        raise KeyboardInterrupt  # as a signal lands before training.json is written
    monkeypatch.setattr(negojax, "export_hf", cut_short)
    with pytest.raises(KeyboardInterrupt):
        export_policy(str(tmp_path), model, {"run": 2})
    assert os.listdir(tmp_path) == ["export"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()} == before
    monkeypatch.undo()
    export_policy(str(tmp_path), model, {"run": 2})  # a whole export replaces the earlier one
    assert os.listdir(tmp_path) == ["export"]
    assert json.loads((tmp_path / "export" / "training.json").read_text()) == {"run": 2}


def test_the_progress_display_names_each_phase_of_a_step(tmp_path):
    proc = run_main("tiny_test", tmp_path, "--config.train.steps=1",
                    "--config.train.eval_every=1")
    for phase in ("train step 1: rollout turn 1/2 (4 dialogues)", "train step 1: final solutions",
                  "train step 1: judge: CA scores of", "train step 1: update (",
                  "train step 1: quick eval", "train step 1: checkpoint"):
        assert phase in proc.stderr, (phase, proc.stderr[-2000:])
    assert "finishing: export, transcripts.html, report" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].lstrip().startswith("report ")

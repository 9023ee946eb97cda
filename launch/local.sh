#!/usr/bin/env bash
# Run negojax as N processes on this machine, each with K CPU devices: the multi-process code
# path of a TPU pod (jax.distributed, one process per host) without a TPU.
#
# Process i runs, from the repository root:
#   JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i JAX_PLATFORMS=cpu \
#   XLA_FLAGS=--xla_force_host_platform_device_count=K \
#   python -m negojax.main --config=$NEGOJAX_CONFIG --config.workdir=$WORKDIR \
#     --config.distributed=True $EXTRA_ARGS
# Each output line is prefixed with [process i]. If one process fails, the others are stopped
# and this script exits with that process's status.
#
# Usage: launch/local.sh [--dry-run] [--help]
#
# Environment:
#   NUM_PROCESSES             N, default 2
#   DEVICES_PER_PROCESS       K, default 4
#   COORDINATOR_PORT          default: a free port
#   NEGOJAX_CONFIG            default configs/tiny_test.py
#   WORKDIR                   default runs/local (relative to the repository root)
#   EXTRA_ARGS                more flags for negojax.main, e.g. '--config.train.steps=2'
#   PYTHON                    interpreter, default python
#   NEGOJAX_LOCAL_CMD         a shell command to run instead of negojax.main (it sees the same
#                             JAX_* variables), e.g. for testing this script
#
# --dry-run prints the N commands, one per line, instead of running them.
set -euo pipefail
: "${NEGOJAX_CONFIG:=configs/tiny_test.py}"
: "${WORKDIR:=runs/local}"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "$@"
: "${NUM_PROCESSES:=2}"
: "${DEVICES_PER_PROCESS:=4}"
: "${PYTHON:=python}"
[[ "$NUM_PROCESSES" =~ ^[1-9][0-9]*$ ]] || die "NUM_PROCESSES=$NUM_PROCESSES must be a positive integer"
[[ "$DEVICES_PER_PROCESS" =~ ^[1-9][0-9]*$ ]] ||
  die "DEVICES_PER_PROCESS=$DEVICES_PER_PROCESS must be a positive integer"
if [[ -z "${COORDINATOR_PORT:-}" ]]; then
  COORDINATOR_PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
if [[ ! "$COORDINATOR_PORT" =~ ^[1-9][0-9]*$ ]] || ((COORDINATOR_PORT > 65535)); then
  die "COORDINATOR_PORT=$COORDINATOR_PORT must be a port number (1-65535)"
fi

command=${NEGOJAX_LOCAL_CMD:-"$PYTHON -m negojax.main --config=$NEGOJAX_CONFIG \
--config.workdir=$WORKDIR --config.distributed=True${EXTRA_ARGS:+ $EXTRA_ARGS}"}

process_env() {
  local id=$1
  printf '%s\n' "JAX_COORDINATOR_ADDRESS=127.0.0.1:$COORDINATOR_PORT" "JAX_NUM_PROCESSES=$NUM_PROCESSES" \
    "JAX_PROCESS_ID=$id" JAX_PLATFORMS=cpu \
    "XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$DEVICES_PER_PROCESS"
}

if ((DRY_RUN)); then
  for ((id = 0; id < NUM_PROCESSES; id++)); do
    mapfile -t assignments < <(process_env "$id")
    printf '%s %s\n' "$(print_command "${assignments[@]}")" "$command"
  done
  exit 0
fi

cd "$REPO_ROOT"
# Job control gives each process (and its output filter) its own process group, so stopping
# one stops everything it started.
set -m
pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ((id = 0; id < NUM_PROCESSES; id++)); do
  mapfile -t assignments < <(process_env "$id")
  (env "${assignments[@]}" bash -c "$command" 2>&1 |
    awk -v prefix="[process $id] " '{ print prefix $0; fflush() }') &
  pids+=("$!")
done
log "started $NUM_PROCESSES processes, coordinator 127.0.0.1:$COORDINATOR_PORT"

running=$NUM_PROCESSES
while ((running > 0)); do
  for id in "${!pids[@]}"; do
    pid=${pids[$id]}
    if [[ -z "$pid" ]] || kill -0 "$pid" 2>/dev/null; then
      continue
    fi
    status=0
    wait "$pid" || status=$?
    pids[id]=""
    running=$((running - 1))
    if ((status != 0)); then
      log "process $id exited with status $status; stopping the others"
      exit "$status"
    fi
  done
  sleep 0.2
done
log "all $NUM_PROCESSES processes finished"

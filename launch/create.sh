#!/usr/bin/env bash
# Create a Cloud TPU VM (or, with QUEUED=1, a queued resource) and wait until it is ready.
#
# Usage: launch/create.sh [--dry-run] [--help]
#
# Environment:
#   PROJECT, ZONE, TPU_NAME   required: where the TPU lives and what it is called
#   ACCELERATOR_TYPE          vN-M, default v4-8 (v4-8 .. v4-128 for negojax's tpu_v4 config)
#   RUNTIME_VERSION           TPU software image, default tpu-ubuntu2204-base
#   QUEUED=1                  request a queued resource named TPU_NAME (node id TPU_NAME too)
#   SPOT=1                    Spot capacity (preemptible at any time, cheapest)
#   PREEMPTIBLE=1             legacy preemptible TPU VM (not with QUEUED=1; use SPOT=1 there)
#   POLL_SECONDS              how often to poll a queued resource, default 30
#
# --dry-run prints the gcloud commands, one per line, instead of running them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "$@"
require_tpu
require RUNTIME_VERSION
require_flag SPOT
require_flag PREEMPTIBLE
validate_accelerator_type
: "${POLL_SECONDS:=30}"

capacity=()
((SPOT)) && capacity+=(--spot)
if ((PREEMPTIBLE)); then
  ((QUEUED)) && die "PREEMPTIBLE=1 does not apply to queued resources: use SPOT=1 with QUEUED=1"
  capacity+=(--preemptible)
fi

if ((QUEUED)); then
  run gcloud compute tpus queued-resources create "$TPU_NAME" "${LOCATION[@]}" \
    "--node-id=$TPU_NAME" "--accelerator-type=$ACCELERATOR_TYPE" \
    "--runtime-version=$RUNTIME_VERSION" "${capacity[@]}"
  describe=(gcloud compute tpus queued-resources describe "$TPU_NAME" "${LOCATION[@]}"
    "--format=value(state.state)")
  if ((DRY_RUN)); then
    print_command "${describe[@]}"
    exit 0
  fi
  # A queued resource waits for capacity; the TPU VM exists only once the state is ACTIVE.
  while true; do
    state=$("${describe[@]}")
    case "$state" in
      ACTIVE) log "queued resource $TPU_NAME is ACTIVE"; break ;;
      FAILED | SUSPENDED | SUSPENDING)
        die "queued resource $TPU_NAME is $state: see 'gcloud compute tpus queued-resources describe $TPU_NAME --zone=$ZONE', then launch/delete.sh" ;;
      *) log "queued resource $TPU_NAME is ${state:-UNKNOWN}; checking again in ${POLL_SECONDS}s" ;;
    esac
    sleep "$POLL_SECONDS"
  done
else
  # tpu-vm create blocks until the VM is READY (or fails), so there is nothing to poll.
  run gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOCATION[@]}" \
    "--accelerator-type=$ACCELERATOR_TYPE" "--version=$RUNTIME_VERSION" "${capacity[@]}"
fi

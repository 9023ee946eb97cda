#!/usr/bin/env bash
# Delete the Cloud TPU VM (or, with QUEUED=1, the queued resource and its TPU VM).
#
# Copy what you want to keep first (launch/sync.sh): the workers' disks go with the VM.
#
# Usage: launch/delete.sh [--dry-run] [--help]
#
# Environment:
#   PROJECT, ZONE, TPU_NAME   required: the TPU made by launch/create.sh
#   QUEUED=1                  it was created as a queued resource
#
# --dry-run prints the gcloud commands, one per line, instead of running them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "$@"
require_tpu

if ((QUEUED)); then
  # --force deletes the TPU VM the queued resource holds along with the request.
  run gcloud compute tpus queued-resources delete "$TPU_NAME" "${LOCATION[@]}" --force --quiet
else
  run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOCATION[@]}" --quiet
fi

#!/usr/bin/env bash
# Copy the run directory of worker 0 (checkpoints, exported model, metrics, transcripts) to GCS.
#
# Uses `gcloud storage rsync --recursive` on worker 0 rather than `cp -r`: the destination layout
# does not depend on whether it exists yet, and running it again copies only what changed, so it
# can be repeated during a run. The TPU VM's service account needs write access to the bucket.
#
# Usage: launch/sync.sh [--dry-run] [--help]
#
# Environment:
#   PROJECT, ZONE, TPU_NAME   required: the TPU VM running launch/run.sh
#   BUCKET                    required: gs://bucket[/prefix] to copy into
#   RUN_NAME                  folder under BUCKET, default TPU_NAME
#   WORKDIR                   the run directory given to launch/run.sh, default $HOME/negojax-run
#
# --dry-run prints the gcloud commands, one per line, instead of running them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "$@"
require_tpu
require BUCKET WORKDIR
[[ "$BUCKET" =~ ^gs://[a-z0-9][-a-z0-9_.]*[a-z0-9](/.*)?$ ]] ||
  die "BUCKET=$BUCKET is not a GCS location: use gs://bucket-name[/prefix]"
: "${RUN_NAME:=$TPU_NAME}"

# cd as run.sh does, so a relative WORKDIR names the same directory.
tpu_ssh 0 "cd $REMOTE_DIR && gcloud storage rsync --recursive $WORKDIR ${BUCKET%/}/$RUN_NAME"

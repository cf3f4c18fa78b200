#!/usr/bin/env bash
# Any train_*.sh preset on a multi-node Ray cluster through `ray job submit`.
# Start the cluster first (`ray start --head` on one node, `ray start --address HEAD:6379` on the
# others), with openrlhf-video installed on every node and model, rows and videos on a shared
# file system (the job runs on the head node: paths are made absolute here).
#
#   NODES=4 GPUS=8 DATA=rows.jsonl POLICY=/models/Qwen2.5-VL-7B-Instruct OUT=runs/tvg \
#     launchers/train_ray_job.sh launchers/train_grounding.sh [more flags...]
#
# `openrlhf-video train` connects to the cluster and installs our patches in every Ray worker
# through Ray's worker_process_setup_hook. Submitting a preset yourself with `ray job submit
# --runtime-env-json ...` works too: that runtime env merges with train's (whose setup hook and
# env vars win where both name one).
set -euo pipefail

PRESET="$(realpath "${1:?name a preset, e.g. launchers/train_grounding.sh}")"
shift
: "${DATA:?}" "${POLICY:?}" "${OUT:?}"
# The job runs with the head node's environment, not this shell's: pass on the frame settings set here.
frame_env=()
for name in OPENRLHF_VIDEO_FRAME_CACHE OPENRLHF_VIDEO_FRAME_CACHE_GB OPENRLHF_VIDEO_DECODE_THREADS; do
  if [[ -n "${!name:-}" ]]; then frame_env+=("$name=${!name}"); fi
done
ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" -- \
  env NODES="${NODES:-1}" GPUS="${GPUS:-8}" DATA="$(realpath "$DATA")" POLICY="$(realpath "$POLICY")" \
  OUT="$(realpath -m "$OUT")" "${frame_env[@]}" bash "$PRESET" "$@"

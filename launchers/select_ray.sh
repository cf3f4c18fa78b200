#!/usr/bin/env bash
# Variance-aware selection on a Ray cluster: vLLM engines (OpenRLHF's) on every GPU of the cluster.
# Start the cluster first (`ray start --head` here, `ray start --address HEAD:6379` on each node),
# with openrlhf-video installed on every node and the data/videos/model on a shared file system.
#
#   DATA=data/train.yaml POLICY=/models/Qwen2.5-VL-7B-Instruct OUT=runs/select launchers/select_ray.sh
#
# Rerunning the same command resumes: finished records in $OUT/stats.jsonl are not rolled out again.
# Extra arguments go to `openrlhf-video select` (e.g. --budget 32000 --std-threshold tvg=0.15).
set -euo pipefail

: "${DATA:?set DATA to a data config (YAML)}"
: "${POLICY:?set POLICY to the starting model directory}"
: "${OUT:?set OUT to the output directory}"
K="${K:-8}"
TP="${TP:-1}"                        # GPUs per engine; engines = cluster GPUs / TP
FPS="${FPS:-2.0}"
TOTAL_PIXELS="${TOTAL_PIXELS:-1605632}"  # 2048 visual tokens, as in training

# The job runs elsewhere on the head node: hand it absolute paths.
ray job submit --address "${RAY_ADDRESS:-http://127.0.0.1:8265}" -- \
  openrlhf-video select --engine ray --data "$(realpath "$DATA")" --policy "$(realpath "$POLICY")" \
    --out "$(realpath -m "$OUT")" --k "$K" \
    --tensor-parallel-size "$TP" --fps "$FPS" --total-pixels "$TOTAL_PIXELS" --max-new-tokens 1024 "$@"

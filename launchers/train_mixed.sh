#!/usr/bin/env bash
# The paper's dual-reward run: grounding, multiple choice and grounded QA rows mixed in one
# dataset (e.g. one `openrlhf-video data rows` of a data config listing all three). Each row's
# label names its task, and reward_plugins picks the discrete or continuous reward per row.
#
#   DATA=mixed_rows.jsonl POLICY=/models/Qwen2.5-VL-7B-Instruct OUT=runs/mixed launchers/train_mixed.sh
exec "$(dirname "$0")/grpo_video.sh" \
  --rollout.batch_size 16 --train.batch_size 128 --train.micro_batch_size 1 --rollout.micro_batch_size 2 \
  --rollout.max_new_tokens 2048 --data.max_len 4608 \
  --video.min_reward_std 0.03 \
  "$@"

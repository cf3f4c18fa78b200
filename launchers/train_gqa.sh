#!/usr/bin/env bash
# GRPO for grounded VideoQA (gqa): the answer's option and when the video shows it, rewarded
# 0.25 * accuracy + 0.25 * IoU + 0.5 * format (edit with --video.reward_weights).
#
#   DATA=gqa_rows.jsonl POLICY=/models/Qwen2.5-VL-7B-Instruct OUT=runs/gqa launchers/train_gqa.sh
exec "$(dirname "$0")/grpo_video.sh" \
  --rollout.batch_size 16 --train.batch_size 128 --train.micro_batch_size 1 --rollout.micro_batch_size 2 \
  --rollout.max_new_tokens 2048 --data.max_len 4608 \
  --video.min_reward_std 0.05 --video.reward_weights "accuracy=0.25,iou=0.25,format=0.5" \
  "$@"

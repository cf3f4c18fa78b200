#!/usr/bin/env bash
# GRPO for multiple-choice VideoQA (mcq): accuracy is 0/1, so only groups with both right and
# wrong answers teach anything; any spread passes the online filter. Answers are short: fewer
# response tokens, bigger batches per GPU.
#
#   DATA=mcq_rows.jsonl POLICY=/models/Qwen2.5-VL-7B-Instruct OUT=runs/mcq launchers/train_mcq.sh
exec "$(dirname "$0")/grpo_video.sh" \
  --rollout.batch_size 32 --train.batch_size 256 --train.micro_batch_size 2 --rollout.micro_batch_size 4 \
  --rollout.max_new_tokens 1024 --data.max_len 3584 \
  --video.min_reward_std 0.01 \
  "$@"

#!/usr/bin/env bash
# GRPO for temporal grounding (tvg) with Temporal-R1's settings: 8 rollouts per prompt at
# temperature 1.0, lr 1e-6 and KL 1e-2 (from grpo_video.sh), 16 prompts per step, up to 2048
# response tokens; reward 0.5 * IoU + 0.5 * format. Groups whose IoU rewards barely differ carry
# no signal: they are dropped online.
#
#   DATA=tvg_rows.jsonl POLICY=/models/Qwen2.5-VL-7B-Instruct OUT=runs/tvg launchers/train_grounding.sh
exec "$(dirname "$0")/grpo_video.sh" \
  --rollout.batch_size 16 --train.batch_size 128 --train.micro_batch_size 1 --rollout.micro_batch_size 2 \
  --rollout.max_new_tokens 2048 --data.max_len 4608 \
  --video.min_reward_std 0.05 \
  "$@"

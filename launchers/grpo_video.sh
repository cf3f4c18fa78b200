#!/usr/bin/env bash
# The flags every video GRPO preset shares: Temporal-R1's GRPO settings (group_norm advantages,
# 8 rollouts per prompt at temperature 1.0, lr 1e-6, KL 1e-2 as a k3 loss), resources, vLLM
# engines, DeepSpeed, logging, checkpoints. Presets (train_grounding.sh, train_mcq.sh,
# train_gqa.sh, train_mixed.sh) add batch sizes, lengths and the online filter; anything after
# them goes to `openrlhf-video train` (OpenRLHF flags or --video.*; a later flag wins, except that
# --algo.dynamic_filtering_range is refused beside a preset's --video.min_reward_std: give --video.min_reward_std 0).
#
#   DATA=rows.jsonl POLICY=/models/Qwen2.5-VL-7B-Instruct OUT=runs/x launchers/grpo_video.sh [flags...]
#
# DATA holds the prompt rows (`openrlhf-video data rows CONFIG --processor $POLICY -o rows.jsonl`).
# NODES x GPUS GPUs; every GPU holds the actor, the reference model and one vLLM engine in turn
# (colocated, vLLM sleeping while DeepSpeed trains). For several nodes use train_ray_job.sh.
set -euo pipefail

: "${DATA:?set DATA to the prompt rows JSONL}"
: "${POLICY:?set POLICY to the starting model directory}"
: "${OUT:?set OUT to the output directory}"
NODES="${NODES:-1}"
GPUS="${GPUS:-8}"
ENGINES=$((NODES * GPUS))

exec openrlhf-video train \
  --actor.model_name_or_path "$POLICY" \
  --data.prompt_dataset "$DATA" \
  --actor.num_nodes "$NODES" --actor.num_gpus_per_node "$GPUS" \
  --ref.num_nodes "$NODES" --ref.num_gpus_per_node "$GPUS" \
  --vllm.num_engines "$ENGINES" --vllm.tensor_parallel_size 1 \
  --vllm.gpu_memory_utilization 0.5 --vllm.enable_sleep --vllm.enable_prefix_caching \
  --train.colocate_all --ds.enable_sleep \
  --ds.zero_stage 3 --ds.param_dtype bf16 --actor.gradient_checkpointing_enable \
  --algo.advantage.estimator group_norm \
  --rollout.n_samples_per_prompt 8 --rollout.temperature 1.0 \
  --actor.adam.lr 1e-6 --algo.kl.init_coef 1e-2 --algo.kl.use_loss --algo.kl.estimator k3 \
  --ckpt.output_dir "$OUT" --ckpt.path "$OUT/ckpt" --ckpt.save_steps 50 --ckpt.save_hf \
  --logger.tensorboard_dir "$OUT/tensorboard" \
  "$@"

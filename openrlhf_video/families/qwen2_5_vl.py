"""Qwen2.5-VL: time in M-RoPE. The processor turns the video metadata's sampled fps into
`second_per_grid_ts` (seconds per temporal patch), which the model's temporal positions scale
with; the training forward needs it, and vLLM's position rule (patches.py)."""

import torch

from openrlhf_video import tiny_model
from openrlhf_video.families import Family


class Qwen25VL(Family):
    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    processor_class = "Qwen2_5_VLProcessor"
    tiny_name = "qwen25vl"  # the name the cache used before there were families
    tiny_version = tiny_model.BUILDER_VERSION

    def train_inputs(self, processor_output) -> dict:
        return {
            "pixel_values_videos": processor_output["pixel_values_videos"],
            "video_grid_thw": processor_output["video_grid_thw"],
            # float32 like vLLM's copy: both sides then floor the very same temporal positions
            "second_per_grid_ts": torch.as_tensor(processor_output["second_per_grid_ts"], dtype=torch.float32),
        }

    def patches(self) -> list:
        from openrlhf_video import patches

        return [patches.transformers_rope_index_as_trained, patches._patch_vllm_video_metadata]

    def positions_as_rolled_out(self, model) -> None:
        from types import MethodType

        from openrlhf_video.patches import qwen25vl_get_rope_index

        model.model.get_rope_index = MethodType(qwen25vl_get_rope_index, model.model)

    def build_tiny(self, out_dir, seed: int) -> None:
        tiny_model._build(out_dir, seed)


FAMILY = Qwen25VL()

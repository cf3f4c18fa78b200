"""Qwen3.5 (dense): Qwen3-VL's video processing (its processor class, time as text) on a hybrid
language model (Gated DeltaNet linear-attention layers between full-attention ones). Its chat
template opens `<think>\n` in the generation prompt itself. vLLM's CPU build runs its linear
attention in bf16 only ("CPU GDN attention requires BF16")."""

from openrlhf_video.families.qwen3_vl import Qwen3VL


class Qwen35(Qwen3VL):
    name = "qwen3_5"
    model_types = ("qwen3_5",)
    tiny_name = "qwen3_5"
    tiny_version = 1
    generation_prompt = (
        "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
        "{% else %}<think>\n{% endif %}"
    )
    think_opened_by_template = True
    vllm_dtype = "bfloat16"

    def text_config(self, ids: dict) -> dict:
        return dict(
            vocab_size=len(ids["vocab"]), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=32768,
            # one of each layer kind (real checkpoints: 3 linear, then 1 full, repeated); vLLM's CPU
            # linear attention needs head dim 128 (32 fails)
            layer_types=["linear_attention", "full_attention"], linear_key_head_dim=128,
            linear_value_head_dim=128, linear_num_key_heads=1, linear_num_value_heads=1,
            # real: rotary on a quarter of head_dim 256, sections [11, 11, 10]; here a quarter of 64
            rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                             "mrope_section": [3, 3, 2], "mrope_interleaved": True},
        )  # fmt: skip

    def vision_config(self) -> dict:
        config = super().vision_config()
        del config["deepstack_visual_indexes"]  # Qwen3.5's vision tower has no deepstack
        return config

    def model_classes(self):
        from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

        return Qwen3_5Config, Qwen3_5ForConditionalGeneration


FAMILY = Qwen35()

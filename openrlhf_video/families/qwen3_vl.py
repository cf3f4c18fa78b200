"""Qwen3-VL: time as text. The processor writes `<t seconds>` before each temporal patch (2 frames),
t from the video metadata's source `fps` and `frames_indices` (without metadata it assumes 24 fps);
positions are plain interleaved M-RoPE with each frame its own t=1 grid, so transformers and vLLM
agree without a position patch, and the training forward needs only pixels and grids."""

from openrlhf_video import tiny_model
from openrlhf_video.families import Family

# Qwen3-VL's chat template, cut to what prompts use (no tools, no reasoning history): no default
# system prompt, vision items as `<|vision_start|><|video_pad|><|vision_end|>` as the real one writes.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    + tiny_model.CONTENT_ITEMS
    + "{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{GENERATION_PROMPT}{% endif %}"
)
# Qwen3's tokenizers have these as plain (not special) added tokens: a reply's tags stay in its text.
ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<think>", "</think>"]


class Qwen3VL(Family):
    name = "qwen3_vl"
    model_types = ("qwen3_vl",)
    processor_class = "Qwen3VLProcessor"
    tiny_name = "qwen3vl"
    tiny_version = 1
    generation_prompt = ""  # what the template adds after `<|im_start|>assistant\n`

    def train_inputs(self, processor_output) -> dict:
        # Time is in the prompt text; `second_per_grid_ts` would be silently ignored by the model.
        return {key: processor_output[key] for key in ("pixel_values_videos", "video_grid_thw")}

    def patches(self) -> list:
        from openrlhf_video import patches

        return [patches._patch_vllm_cpu_text_config_architectures]

    def text_config(self, ids: dict) -> dict:
        return dict(
            vocab_size=len(ids["vocab"]), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=32768,
            # Real checkpoints interleave M-RoPE (vLLM's default is not to: gap 1e-2 without it); their
            # sections, [24, 20, 20] of head_dim 128, scaled to head_dim 64.
            rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [12, 10, 10],
                             "mrope_interleaved": True},
        )  # fmt: skip

    def vision_config(self) -> dict:
        return dict(
            depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128, patch_size=16,
            spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=576, deepstack_visual_indexes=[0],
        )  # fmt: skip

    def model_classes(self):
        from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

        return Qwen3VLConfig, Qwen3VLForConditionalGeneration

    def build_tiny(self, out_dir, seed: int) -> None:
        from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

        template = CHAT_TEMPLATE.replace("{GENERATION_PROMPT}", self.generation_prompt)
        tokenizer = tiny_model.build_tokenizer(chat_template=template, added_tokens=ADDED_TOKENS)
        ids = dict(zip(tiny_model.SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(tiny_model.SPECIAL_TOKENS)))
        config_class, model_class = self.model_classes()
        text = self.text_config({"vocab": tokenizer}) | dict(
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
        )
        config = config_class(
            text_config=text,
            vision_config=self.vision_config(),
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
        )
        tiny_model.save_random_model(model_class, config, ids, seed, out_dir)
        # Real checkpoints' processors (patch 16, merge 2: 32-pixel tokens) with small pixel budgets:
        # the video budget is for all frames together in this processor.
        processor = Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(
                patch_size=16, merge_size=2, temporal_patch_size=2, min_pixels=4 * 32 * 32, max_pixels=256 * 32 * 32
            ),
            video_processor=Qwen3VLVideoProcessor(
                patch_size=16,
                merge_size=2,
                temporal_patch_size=2,
                size={"shortest_edge": 4 * 32 * 32, "longest_edge": 2048 * 32 * 32},
            ),  # fmt: skip
            tokenizer=tokenizer,
            chat_template=template,
        )
        processor.save_pretrained(out_dir)


FAMILY = Qwen3VL()

"""One video GRPO step on a GPU at Qwen2.5-VL-3B's shape (random weights): training side and rollout.

    python benchmarks/gpu_step.py [--batch 4] [--response-tokens 512] [--steps 5] [--no-rollout]

Training side, as openrlhf-video trains: OpenRLHF's Actor (our patched forward: vLLM's 3-D
positions, video-only inputs) on a batch of prompts with one 2 fps video of 2048 visual tokens
(16 frames at 448x448: 8 temporal patches x 16 x 16 merged patches), then OpenRLHF's PolicyLoss with
group-normalised advantages, backward and an AdamW step. Prints the median step time, training
tokens/s and peak GPU memory. Rollout, when vLLM is installed: the same random model served by vLLM
(bf16), 16 prompts x 8 samples with the video, `--response-tokens` each; prints generated tokens/s.

Not run by CI (needs a CUDA GPU and ~40 GB for the default batch). The model is built from a
config (nothing is downloaded); its tokenizer is the tiny test model's (vision token ids match).
"""

import argparse
import statistics
import tempfile
import time

import torch

FRAMES, SIDE = 16, 448  # 2 fps: 8 s of video; (448 / 28)^2 = 256 merged patches per temporal patch
VIDEO_TOKENS = FRAMES // 2 * (SIDE // 28) ** 2  # 2048
PROMPT_TEXT_TOKENS = 128


def qwen25vl_3b_config(tokenizer):
    """Qwen2.5-VL-3B-Instruct's architecture, with the tiny tokenizer's special token ids."""
    from transformers import Qwen2_5_VLConfig

    special = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    ids = dict(zip(special, tokenizer.convert_tokens_to_ids(special)))
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
            num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
            tie_word_embeddings=True, torch_dtype="bfloat16",
        ),
        vision_config=dict(
            depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        torch_dtype="bfloat16",
    )  # fmt: skip


def training_batch(config, batch: int, response_tokens: int, device):
    """Right-padded-free batch: text, <|vision_start|>, 2048 video tokens, <|vision_end|>, text, reply."""
    text = torch.randint(0, 400, (batch, PROMPT_TEXT_TOKENS), device=device)
    video = torch.full((batch, VIDEO_TOKENS), config.video_token_id, device=device)
    start = torch.full((batch, 1), config.vision_start_token_id, device=device)
    end = torch.full((batch, 1), config.vision_end_token_id, device=device)
    reply = torch.randint(0, 400, (batch, response_tokens), device=device)
    sequences = torch.cat([text[:, :8], start, video, end, text[:, 8:], reply], dim=1)
    action_mask = torch.zeros(batch, sequences.shape[1] - 1, device=device)
    action_mask[:, -response_tokens:] = 1
    patches = FRAMES // 2 * (SIDE // 14) ** 2
    mm_inputs = {
        "pixel_values_videos": torch.randn(batch * patches, 3 * 2 * 14 * 14, device=device, dtype=torch.bfloat16),
        "video_grid_thw": torch.tensor([[FRAMES // 2, SIDE // 14, SIDE // 14]] * batch, device=device),
        "second_per_grid_ts": torch.tensor([2 / 2.0] * batch, device=device),  # 2 frames per patch at 2 fps
    }
    return sequences, torch.ones_like(sequences), action_mask, mm_inputs


def time_training(model, args):
    from openrlhf.models import Actor, PolicyLoss

    from openrlhf_video import patches

    # The training-side patches only: the vLLM ones need vLLM, which this side does not.
    patches.transformers_rope_index_as_trained()
    patches._patch_actor_forward()
    actor = Actor(model)  # an instance: set what Actor(path) would have detected
    actor.is_vlm, actor._vlm_config, actor.packing_samples = True, model.config, False
    if args.gradient_checkpointing:
        actor.gradient_checkpointing_enable()
    actor.train()
    optimizer = torch.optim.AdamW(actor.parameters(), lr=1e-6)
    loss_fn = PolicyLoss()
    sequences, attention_mask, action_mask, mm_inputs = training_batch(
        model.config, args.batch, args.response_tokens, "cuda"
    )
    rewards = torch.rand(args.batch, device="cuda")
    advantages = ((rewards - rewards.mean()) / (rewards.std() + 1e-9))[:, None] * action_mask  # group_norm

    with torch.no_grad():
        old_log_probs = actor(sequences, action_mask, attention_mask, **mm_inputs)
    times = []
    torch.cuda.reset_peak_memory_stats()
    for step in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        log_probs = actor(sequences, action_mask, attention_mask, **mm_inputs)
        loss = loss_fn(log_probs, old_log_probs, advantages, action_mask=action_mask)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    step_s = statistics.median(times)
    tokens = sequences.numel()
    print(f"training: batch {args.batch} x {sequences.shape[1]} tokens ({VIDEO_TOKENS} video, {args.response_tokens} reply), "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}")  # fmt: skip
    print(f"  step (forward + GRPO loss + backward + AdamW): median {step_s:.3f} s over {args.steps} "
          f"(min {min(times):.3f}, max {max(times):.3f}); {tokens / step_s:,.0f} tokens/s")  # fmt: skip
    print(f"  peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def time_rollout(model_dir, args):
    import numpy as np
    from vllm import LLM, SamplingParams

    from openrlhf_video.tiny_model import VISION_TOKENS

    max_model_len = PROMPT_TEXT_TOKENS + VIDEO_TOKENS + args.response_tokens + 64
    llm = LLM(model=model_dir, dtype="bfloat16", max_model_len=max_model_len, limit_mm_per_prompt={"video": 1},
              gpu_memory_utilization=0.45, seed=0)  # fmt: skip
    tokenizer = llm.get_tokenizer()
    prompt = tokenizer("<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>When does the square appear?"
                       "<|im_end|>\n<|im_start|>assistant\n")["input_ids"]  # fmt: skip
    rng = np.random.default_rng(0)
    requests = []
    for _ in range(args.rollout_prompts):
        frames = rng.integers(0, 255, (FRAMES, SIDE, SIDE, 3), dtype=np.uint8)
        metadata = dict(fps=2.0, duration=FRAMES / 2.0, total_num_frames=FRAMES, frames_indices=list(range(FRAMES)),
                        do_sample_frames=False)  # fmt: skip
        requests.append({"prompt_token_ids": prompt, "multi_modal_data": {"video": [(frames, metadata)]}})
    params = SamplingParams(n=args.rollout_samples, temperature=1.0, max_tokens=args.response_tokens, ignore_eos=True,
                            bad_words=list(VISION_TOKENS), detokenize=False)  # fmt: skip
    llm.generate(requests[:2], SamplingParams(max_tokens=8), use_tqdm=False)  # warm up
    started = time.perf_counter()
    outputs = llm.generate(requests, params, use_tqdm=False)
    seconds = time.perf_counter() - started
    generated = sum(len(o.token_ids) for out in outputs for o in out.outputs)
    print(f"rollout: {args.rollout_prompts} prompts x {args.rollout_samples} samples x {args.response_tokens} tokens, "
          f"one {VIDEO_TOKENS}-token video each: {seconds:.1f} s, {generated / seconds:,.0f} generated tokens/s")  # fmt: skip
    del llm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="sequences per training micro-batch")
    parser.add_argument("--response-tokens", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--no-rollout", action="store_true", help="skip vLLM even if installed")
    parser.add_argument("--rollout-prompts", type=int, default=16)
    parser.add_argument("--rollout-samples", type=int, default=8)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_step.py needs a CUDA GPU")

    from transformers import (
        AutoTokenizer,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from openrlhf_video.tiny_model import build_tiny_qwen25vl

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_qwen25vl())
    config = qwen25vl_3b_config(tokenizer)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=torch.bfloat16, attn_implementation="sdpa"
        )
    print(f"model: Qwen2.5-VL-3B shape, {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters, bf16, "
          f"{torch.cuda.get_device_name()}")  # fmt: skip

    try:
        import vllm  # noqa: F401
    except ImportError:
        args.no_rollout = True
        print("rollout: vLLM is not installed; training side only")
    if not args.no_rollout:  # first, while the GPU is free for vLLM's memory profile
        with tempfile.TemporaryDirectory() as model_dir:
            model.save_pretrained(model_dir)
            frames = dict(min_pixels=4 * 28 * 28, max_pixels=SIDE * SIDE)
            Qwen2_5_VLProcessor(
                image_processor=Qwen2VLImageProcessor(**frames), video_processor=Qwen2VLVideoProcessor(**frames),
                tokenizer=tokenizer, chat_template=tokenizer.chat_template,
            ).save_pretrained(model_dir)  # fmt: skip
            time_rollout(model_dir, args)
        torch.cuda.empty_cache()
    time_training(model, args)


if __name__ == "__main__":
    main()

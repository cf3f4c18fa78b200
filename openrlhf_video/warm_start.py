"""Warm start: a short supervised pass that teaches a (tiny, random) policy the answer format.

A random model never writes `<answer>...</answer>`, so every rollout scores 0 and every GRPO
group is flat: nothing to select and nothing to learn. A few teacher-forced steps on the
records' ground-truth answers, written in the format the prompts ask for, give a policy whose
rollouts are sometimes right and sometimes wrong. Used by the selection evidence and the CPU demo.
"""

import json
import random
from pathlib import Path

from openrlhf_video.progress import progress
from reward_plugins import record_label

THINK = "<think>I watch the video and find the square.</think>"


def answer_text(record: dict, *, think: bool = True) -> str:
    """The record's ground truth as a full-reward response in the format its prompt asks for."""
    task = record["task"]
    span = record_label(record)["span"]  # on the time axis the model sees (a clip's, with one)
    if task == "tvg":
        answer = json.dumps({"start_time": span[0], "end_time": span[1]})
    elif task == "gqa":
        answer = json.dumps({"choice": record["answer"], "start_time": span[0], "end_time": span[1]})
    else:
        answer = record["answer"]
    return f"{THINK if think else ''}<answer>{answer}</answer>"


def training_example(processor, record: dict, *, think: bool = True, fps: float = 1.0,
                     total_pixels: int = 64 * 28 * 28 * 4) -> dict:  # fmt: skip
    """Model inputs that teacher-force `answer_text` after the record's prompt, built like a
    rollout (openrlhf_video.rollout.video_inputs), with the loss on the answer tokens only. Where
    the prompt already opened the thinking (Qwen3.5's template), the answer continues it."""
    import torch

    from openrlhf_video.data import render_prompt
    from openrlhf_video.data.frames import load_frames
    from openrlhf_video.data.prompts import opened_think
    from openrlhf_video.rollout import video_inputs

    frames = load_frames(record["video"], clip=record["clip"], fps=fps, total_pixels=total_pixels)
    prompt = render_prompt(processor, record, think=think)
    _, prompt_ids, mm_inputs, _ = video_inputs(processor, prompt, frames)
    answer = answer_text(record, think=think).removeprefix(opened_think(prompt).strip())
    answer_ids = processor.tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([prompt_ids + answer_ids])
    video_token = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    return {
        "input_ids": input_ids,
        "labels": torch.tensor([[-100] * len(prompt_ids) + answer_ids]),
        "mm_token_type_ids": (input_ids == video_token).long() * 2,
        **mm_inputs,
    }


def warm_start(model_dir, records: list[dict], out_dir, *, steps: int = 300, lr: float = 2e-3, seed: int = 0,
               think: bool = True, fps: float = 1.0, total_pixels: int = 64 * 28 * 28 * 4,
               decay: bool = False) -> Path:  # fmt: skip
    """Fine-tune `model_dir` for `steps` single-example AdamW steps on `records` (videos readable
    as written) and save it with its processor to `out_dir`; returns `out_dir`. The defaults
    take the tiny model from never answering to a format rate of 0.7-0.85 at temperature 1.0 on
    8 synthetic clips (three seeds): rollouts that vary. `decay`: the learning rate falls linearly
    to 0 over the steps, so the model settles instead of leaning towards the last few answers."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from openrlhf_video import families

    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    # Train on the positions vLLM will sample with (for Qwen2.5-VL transformers' own rule differs after a video).
    families.for_model(model_dir).positions_as_rolled_out(model)
    examples = [training_example(processor, r, think=think, fps=fps, total_pixels=total_pixels)
                for r in progress(records, desc="warm-start inputs")]  # fmt: skip

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 - i / steps if decay else 1.0)
    rng = random.Random(seed)
    model.train()
    for _ in (bar := progress(range(steps), desc="warm start")):
        loss = model(**rng.choice(examples)).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        bar.set_postfix(loss=f"{loss.item():.3f}")

    # Keep the tiny model's property that fp32 weights are exact in bf16 (OpenRLHF's Actor loads
    # bf16, the CPU vLLM engine fp32: rounded weights give both the same values).
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.to(torch.bfloat16).float())
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir

"""The CPU stack works for real: HF processor and model, vLLM's CPU build, OpenRLHF's Actor,
lmms-eval's evaluator and Ray, all on the offline tiny Qwen2.5-VL and synthetic clips."""

import os
import textwrap

import av
import numpy as np
import pytest
import torch

from openrlhf_video.synthetic import make_video
from openrlhf_video.tiny_model import vision_token_ids

N_FRAMES = 8
QUESTION = "When does the red square appear?"


def sample_clip(path, n=N_FRAMES):
    """n uniformly spaced frames (uint8, T x H x W x 3) and the metadata HF and vLLM need."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        all_frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    indices = np.linspace(0, len(all_frames) - 1, n).round().astype(int).tolist()
    metadata = dict(fps=fps, total_num_frames=len(all_frames), duration=len(all_frames) / fps, frames_indices=indices)
    return np.stack([all_frames[i] for i in indices]), metadata


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two clips that differ only in the square's colour."""
    root = tmp_path_factory.mktemp("clips")
    return {color: sample_clip(make_video(root / f"{color}.mp4", color=color)) for color in ("red", "blue")}


def video_prompt(processor, question=QUESTION):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_cpu_shims_make_torchvision_and_flash_attn_importable():
    import flash_attn
    import flash_attn_2_cuda
    import torchvision
    from openrlhf.models import Actor  # needs flash_attn's pure-torch helpers

    assert torchvision.__version__ and flash_attn.__version__ and Actor
    with pytest.raises(AttributeError, match="CPU-only shim"):
        flash_attn_2_cuda.fwd  # noqa: B018
    with pytest.raises(ModuleNotFoundError):  # else OpenRLHF picks a triton kernel that needs CUDA
        import flash_attn.ops.triton.cross_entropy  # noqa: F401


def test_processor_expands_video_tokens_to_the_grid(processor, clips):
    frames, metadata = clips["red"]
    inputs = processor(text=[video_prompt(processor)], videos=[frames], video_metadata=[metadata], return_tensors="pt")

    # Qwen's smart_resize: each side rounded to a multiple of patch 14 x merge 2 (within min/max pixels).
    height, width = frames.shape[1:3]
    grid = [N_FRAMES // 2, round(height / 28) * 2, round(width / 28) * 2]
    assert inputs["video_grid_thw"].tolist() == [grid]
    assert inputs["pixel_values_videos"].shape == (np.prod(grid), 3 * 2 * 14 * 14)
    video_pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert (inputs["input_ids"] == video_pad).sum().item() == np.prod(grid) // 4
    # seconds per temporal patch come from the sampled fps: 2 frames / (8 frames / 8 s)
    sampled_fps = N_FRAMES / metadata["duration"]
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([2 / sampled_fps])


def test_hf_generate_with_video_sees_the_video_and_never_samples_vision_tokens(tiny_model_dir, processor, clips):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    forbidden = vision_token_ids(processor.tokenizer)
    logits = {}
    for color, (frames, metadata) in clips.items():
        inputs = processor(
            text=[video_prompt(processor)], videos=[frames], video_metadata=[metadata], return_tensors="pt"
        )
        with torch.no_grad():
            logits[color] = model(**inputs).logits[0, -1]
        torch.manual_seed(0)
        out = model.generate(**inputs, do_sample=True, max_new_tokens=24, min_new_tokens=24,
                             bad_words_ids=[[i] for i in forbidden])  # fmt: skip
        prompt_len = inputs["input_ids"].shape[1]
        assert out.shape == (1, prompt_len + 24)
        assert torch.equal(out[0, :prompt_len], inputs["input_ids"][0])
        assert not set(out[0, prompt_len:].tolist()) & set(forbidden)
    # The pixels reach the language model: a blue square instead of a red one changes the logits.
    assert not torch.allclose(logits["red"], logits["blue"])


def test_openrlhf_actor_computes_action_log_probs_for_a_video_batch(tiny_model_dir, processor, clips):
    from openrlhf.models import Actor

    actor = Actor(str(tiny_model_dir), attn_implementation="sdpa", param_dtype="bf16")
    actor.model.float()  # Actor only loads bf16/fp16; bf16 backward on CPU is ~30x slower
    assert actor.is_vlm
    # Two prompts of different lengths (8 and 4 frames), left-padded as OpenRLHF's rollout does.
    (red, red_meta), (blue, blue_meta) = clips["red"], clips["blue"]
    inputs = processor(
        text=[video_prompt(processor), video_prompt(processor, "Blue?")],
        videos=[red, blue[::2]],
        video_metadata=[red_meta, {**blue_meta, "frames_indices": blue_meta["frames_indices"][::2]}],
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    assert inputs["attention_mask"][1].sum() < inputs["attention_mask"][0].sum()
    response_len = 6
    forbidden = set(vision_token_ids(processor.tokenizer))
    allowed = torch.tensor([i for i in range(len(processor.tokenizer)) if i not in forbidden])
    response = allowed[torch.randint(len(allowed), (2, response_len), generator=torch.Generator().manual_seed(0))]
    sequences = torch.cat([inputs["input_ids"], response], dim=1)
    attention_mask = torch.cat([inputs["attention_mask"], torch.ones_like(response)], dim=1)
    action_mask = torch.ones_like(response, dtype=torch.bool)
    action_mask[1, -2:] = False  # a response that ended early

    with torch.no_grad():
        log_probs = actor(
            sequences,
            action_mask,
            attention_mask,
            pixel_values_videos=inputs["pixel_values_videos"],
            video_grid_thw=inputs["video_grid_thw"],
            second_per_grid_ts=inputs["second_per_grid_ts"],
        )
    assert log_probs.shape == (2, response_len)
    assert torch.isfinite(log_probs).all()
    assert (log_probs[action_mask] < 0).all() and (log_probs[~action_mask] == 0).all()
    # A tiny random model is near-uniform over its vocabulary.
    assert log_probs[action_mask].mean().item() == pytest.approx(-np.log(len(processor.tokenizer)), abs=1.0)


def test_lmms_eval_evaluates_a_local_task_with_the_dummy_model(tmp_path):
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"question": "first?", "answer": "A"}\n{"question": "second?", "answer": "B"}\n')
    (tmp_path / "stack_check.yaml").write_text(textwrap.dedent(f"""\
        task: rlt_stack_check
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {docs}
        test_split: test
        output_type: generate_until
        doc_to_text: "{{{{question}}}}"
        doc_to_target: "{{{{answer}}}}"
        generation_kwargs:
          max_new_tokens: 4
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        """))  # fmt: skip
    results = simple_evaluate(
        model="dummy",
        model_args="response=A",
        tasks=["rlt_stack_check"],
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
        log_samples=True,
    )
    assert results["results"]["rlt_stack_check"]["exact_match,none"] == 0.5  # right on doc 1 only
    samples = results["samples"]["rlt_stack_check"]
    assert [s["target"] for s in samples] == ["A", "B"] and all(s["resps"] == [["A"]] for s in samples)


def test_ray_starts_with_two_cpus_and_runs_a_task():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.cluster_resources()["CPU"] == 2

        @ray.remote
        def square_sum(n):
            return os.getpid(), sum(i * i for i in range(n))

        pid, value = ray.get(square_sum.remote(100))
        assert value == 328350 and pid != os.getpid()  # ran in a worker process
    finally:
        ray.shutdown()


def test_vllm_cpu_generate_uses_the_hf_processor_prompt_ids(tiny_model_dir, processor, clips, monkeypatch):
    # Engine in the test process (starts in ~3 s instead of ~25 s), no graph capture, fp32.
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    frames, metadata = clips["red"]
    prompt = video_prompt(processor)
    hf_ids = processor(text=[prompt], videos=[frames], video_metadata=[metadata])["input_ids"][0]

    llm = LLM(str(tiny_model_dir), dtype="float32", enforce_eager=True, max_model_len=4096, seed=0)
    forbidden = set(vision_token_ids(processor.tokenizer))
    params = SamplingParams(
        n=2, max_tokens=16, temperature=1.0, seed=0,
        allowed_token_ids=[i for i in range(len(processor.tokenizer)) if i not in forbidden],
    )  # fmt: skip
    # vLLM takes (frames, metadata); pre-sampled frames must not be sampled again.
    video = (frames, {**metadata, "do_sample_frames": False})
    (out,) = llm.generate([{"prompt": prompt, "multi_modal_data": {"video": [video]}}], params)

    assert list(out.prompt_token_ids) == list(hf_ids)
    assert len(out.outputs) == 2
    for completion in out.outputs:
        assert 0 < len(completion.token_ids) <= 16
        assert not set(completion.token_ids) & forbidden
    del llm

"""The offline fixtures: synthetic clips show their event exactly where the records say, and the
tiny models (Qwen2.5-VL, Qwen3-VL, Qwen3.5) are faithful, deterministic, cached checkpoints."""

import json

import av
import numpy as np
import pytest
import torch

from openrlhf_video.synthetic import COLORS, make_synthetic_dataset, make_video
from openrlhf_video.tiny_model import SPECIAL_TOKENS, build_tiny_qwen25vl, vision_token_ids


def visible_frames(path, color):
    """Indices of the frames where the square (of `color`) is on screen."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    # The background noise is < 40 everywhere; the square is a bright patch close to its colour.
    return [i for i, f in enumerate(frames) if (np.abs(f - COLORS[color]).sum(-1) < 60).sum() > 100], len(frames)


def test_make_video_shows_the_square_exactly_during_the_event(tmp_path):
    path = make_video(tmp_path / "a.mp4", duration=6.0, fps=10, event=(1.5, 3.2), color="green", seed=3)
    shown, n_frames = visible_frames(path, "green")
    assert n_frames == 60
    assert shown == list(range(15, 33))  # t = i / fps in [1.5, 3.2]


def test_make_video_is_lossless_so_a_seed_gives_the_same_pixels_in_every_run(tmp_path):
    """Lossy x264 decoded to other pixels from run to run once torch was loaded, so seeded demo runs
    did not reproduce. The first frame (noise only, the event starts later) must decode to exactly
    the picture drawn from the seed, in the stream's own YUV 4:2:0."""
    path = make_video(tmp_path / "a.mp4", duration=2.0, fps=10, event=(1.0, 2.0), seed=7, size=(64, 48))
    rng = np.random.default_rng(7)  # make_video's draws: the square's corner, then the first frame
    side = 48 // 2
    rng.integers(0, 64 - side + 1), rng.integers(0, 48 - side + 1)
    drawn = rng.integers(0, 40, (48, 64, 3), dtype=np.uint8)
    expected = av.VideoFrame.from_ndarray(drawn, format="rgb24").reformat(format="yuv420p").to_ndarray()
    with av.open(str(path)) as container:
        first = next(container.decode(video=0)).to_ndarray()
    assert np.array_equal(first, expected)


def test_make_video_is_cached_per_parameters(tmp_path):
    path = make_video(tmp_path / "a.mp4", color="red")
    mtime = path.stat().st_mtime_ns
    assert make_video(path, color="red").stat().st_mtime_ns == mtime  # same parameters: untouched
    make_video(path, color="blue")
    assert visible_frames(path, "blue")[0] and not visible_frames(path, "red")[0]
    path.write_bytes(b"not a video")  # a corrupt cache entry is rebuilt, not trusted
    assert visible_frames(make_video(path, color="blue"), "blue")[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(color="mauve"), "unknown color 'mauve'"),
        (dict(size=(161, 96)), r"size \(161, 96\) must be even"),
        (dict(event=(5.0, 9.0), duration=8.0), r"event \(5.0, 9.0\)"),
        (dict(event=(3.0, 2.0)), "start < end"),
    ],
)
def test_make_video_rejects_bad_parameters_naming_the_file(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        make_video(tmp_path / "bad.mp4", **kwargs)
    assert "bad.mp4" in str(error.value)
    assert not (tmp_path / "bad.mp4").exists()


def test_synthetic_dataset_records_match_their_videos(synthetic_data):
    records = [json.loads(line) for line in (synthetic_data / "records.jsonl").read_text().splitlines()]
    assert len(records) == 32 and {r["task"] for r in records} == {"tvg", "mcq", "gqa", "oeqa"}
    assert len({r["id"] for r in records}) == 32
    durations = {r["duration"] for r in records}
    assert len(durations) > 3 and all(6 <= d <= 12 for d in durations)
    for r in records:
        assert set(r) == {"id", "task", "video", "question", "options", "answer", "span", "duration", "clip", "source"}
        assert (r["span"] is not None) == (r["task"] in ("tvg", "gqa"))
        assert (r["options"] is not None) == (r["task"] in ("mcq", "gqa"))
    by_video = {}
    for r in records:
        by_video.setdefault(r["video"], {})[r["task"]] = r
    assert len({tasks["oeqa"]["answer"] for tasks in by_video.values()}) > 2  # colours vary
    for video, tasks in list(by_video.items())[:3]:  # decoding all 8 adds seconds, not information
        color, (start, end) = tasks["oeqa"]["answer"], tasks["tvg"]["span"]
        assert color in tasks["tvg"]["question"]
        for choice in ("mcq", "gqa"):
            options, letter = tasks[choice]["options"], tasks[choice]["answer"]
            assert len(options) == 4 and options["ABCD".index(letter)] == color
        shown, n_frames = visible_frames(synthetic_data / video, color)
        assert n_frames == round(tasks["tvg"]["duration"] * 10)
        assert shown[0] / 10 == pytest.approx(start, abs=0.1) and shown[-1] / 10 == pytest.approx(end, abs=0.1)


def test_synthetic_dataset_is_deterministic_and_cached(tmp_path, synthetic_data):
    records = (synthetic_data / "records.jsonl").read_text()
    mtimes = {p.name: p.stat().st_mtime_ns for p in synthetic_data.rglob("*.mp4")}
    assert (make_synthetic_dataset(synthetic_data, n_videos=8, seed=0) / "records.jsonl").read_text() == records
    assert {p.name: p.stat().st_mtime_ns for p in synthetic_data.rglob("*.mp4")} == mtimes
    other = make_synthetic_dataset(tmp_path / "other", n_videos=2, seed=1)
    assert (other / "records.jsonl").read_text().splitlines()[0] != records.splitlines()[0]


def test_tiny_model_is_a_qwen25vl_checkpoint_with_qwen_tokens(tiny_model_dir):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    ids = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)
    assert ids == list(range(ids[0], ids[0] + len(SPECIAL_TOKENS)))  # Qwen's order, contiguous
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert config.model_type == "qwen2_5_vl" and config.video_token_id == tokenizer.convert_tokens_to_ids(
        "<|video_pad|>"
    )
    text = config.text_config
    assert text.hidden_size // text.num_attention_heads == 64  # what vLLM's CPU attention accepts
    assert sum(text.rope_parameters["mrope_section"]) == 32
    assert sorted(vision_token_ids(tokenizer)) == sorted(
        [config.vision_start_token_id, config.vision_end_token_id, config.image_token_id, config.video_token_id,
         tokenizer.convert_tokens_to_ids("<|vision_pad|>")]
    )  # fmt: skip
    # Text round-trips through the byte-level BPE, including text it never saw.
    for text_in in ["<think>x</think><answer>2.5 to 7.0</answer>", "Zürich 北京 \t\n"]:
        assert tokenizer.decode(tokenizer(text_in)["input_ids"]) == text_in
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q"}]}],
        tokenize=False, add_generation_prompt=True,
    )  # fmt: skip
    assert prompt.endswith(
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Q<|im_end|>\n<|im_start|>assistant\n"
    )
    for name, tensor in load_file(tiny_model_dir / "model.safetensors").items():
        assert tensor.dtype == torch.float32, name
        assert (tensor.bfloat16().float() == tensor).all(), f"{name} is not bf16-exact"


def test_tiny_model_build_is_deterministic_and_reused(tmp_path, tiny_model_dir):
    out = build_tiny_qwen25vl(tmp_path / "tiny", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (out / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_qwen25vl(out, seed=0) == out and (out / "model.safetensors").stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="seed 1"):  # never overwrite a different model
        build_tiny_qwen25vl(out, seed=1)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_tiny_qwen3_family_models_are_checkpoints_as_released(family, tmp_path):
    """Configs set what real Qwen3-VL / Qwen3.5 checkpoints set (interleaved M-RoPE: vLLM's default
    is not to interleave), at sizes vLLM's CPU kernels accept; the family is read back from the
    directory; the build is deterministic; Qwen3.5's template opens the thinking."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from openrlhf_video import families
    from openrlhf_video.tiny_model import build_tiny_model

    model_dir = build_tiny_model(family)
    config = AutoConfig.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    assert config.model_type == family and families.for_model(model_dir).name == family
    assert families.for_processor(processor) is families.get("qwen3_vl")  # Qwen3.5 processes as Qwen3-VL
    text = config.text_config
    assert text.rope_parameters["mrope_interleaved"] is True and text.head_dim == 64
    assert config.video_token_id == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    if family == "qwen3_5":  # linear attention: head dim 128 (vLLM's CPU kernel fails with 32)
        assert "linear_attention" in text.layer_types and text.linear_key_head_dim == 128
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    assert type(model).__name__ == config.architectures[0]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q"}]}],
        tokenize=False, add_generation_prompt=True,
    )  # fmt: skip
    opened = "<think>\n" if families.get(family).think_opened_by_template else ""
    assert (
        prompt
        == f"<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Q<|im_end|>\n<|im_start|>assistant\n{opened}"
    )
    again = build_tiny_model(family, tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name

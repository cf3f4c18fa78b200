"""openrlhf_video.patches without a vLLM engine: each patch against upstream's own code, and
each test fails with the upstream function put back (the log-prob parity and weight-sync
tests in test_rollout.py cover the rest end to end)."""

import asyncio
from types import SimpleNamespace

import pytest
import torch

from openrlhf_video import patches

patches.apply()

SEGMENTS = {
    "text, video, text": [("text", 5), ("video", (4, 4, 6, 1.0)), ("text", 7)],
    "slow video, long in time": [("text", 3), ("video", (16, 2, 2, 2.0)), ("text", 9)],
    "odd sampled fps": [("text", 2), ("video", (6, 4, 4, 2 / 3)), ("text", 4)],
    "two videos, back to back": [("text", 1), ("video", (2, 2, 4, 0.5)), ("video", (4, 4, 2, 1.5)), ("text", 3)],
    "image then video": [("text", 4), ("image", (1, 6, 4)), ("text", 2), ("video", (8, 2, 2, 1.0)), ("text", 2)],
}
MERGE, TOKENS_PER_SECOND = 2, 2


def layout(segments):
    """token types, vLLM MultiModalFeatureSpec stand-ins, and (image, video) grids of a prompt."""
    types, features, images, videos = [], [], [], []
    for kind, spec in segments:
        if kind == "text":
            types += [0] * spec
            continue
        t, h, w = spec[:3]
        data = {f"{kind}_grid_thw": SimpleNamespace(data=torch.tensor([t, h, w]))}
        if kind == "video":
            seconds = torch.tensor(spec[3], dtype=torch.float32)  # float32 as vLLM keeps it
            data["second_per_grid_ts"] = SimpleNamespace(data=seconds)
            videos.append((t, h, w, seconds.item()))
        else:
            images.append((t, h, w))
        features.append(SimpleNamespace(modality=kind, mm_position=SimpleNamespace(offset=len(types)), data=data))
        types += [1 if kind == "image" else 2] * (t * h * w // MERGE**2)
    return types, features, images, videos


@pytest.mark.parametrize("name", SEGMENTS)
def test_positions_follow_vllms_own_code(name):
    from vllm.model_executor.models.qwen2_5_vl import (
        Qwen2_5_VLForConditionalGeneration as VllmQwen,
    )

    types, features, images, videos = layout(SEGMENTS[name])
    vision = SimpleNamespace(spatial_merge_size=MERGE, tokens_per_second=TOKENS_PER_SECOND)
    model = SimpleNamespace(config=SimpleNamespace(vision_config=vision))
    model.iter_mm_grid_thw = lambda mm_features: VllmQwen.iter_mm_grid_thw(model, mm_features)
    expected, _ = VllmQwen.get_mrope_input_positions(model, [0] * len(types), features)

    ours = patches.vllm_mrope_positions(types, iter(images), iter(videos), MERGE, TOKENS_PER_SECOND)
    assert ours.tolist() == expected.tolist()


def hf_model(tiny_model_dir):
    from transformers import AutoConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.vision_config.tokens_per_second = TOKENS_PER_SECOND
    return Qwen2_5_VLModel(config)


def batch_inputs(names, pad=3):
    """Right-padded batch of several layouts, as OpenRLHF's Experience batches are."""
    rows = [layout(SEGMENTS[name]) for name in names]
    length = max(len(types) for types, *_ in rows) + pad
    token_types = torch.zeros(len(rows), length, dtype=torch.int32)
    attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, (types, *_) in enumerate(rows):
        token_types[i, : len(types)] = torch.tensor(types)
        attention_mask[i, : len(types)] = 1
    images = [grid for _, _, row_images, _ in rows for grid in row_images]
    videos = [grid for *_, row_videos in rows for grid in row_videos]
    return rows, dict(
        input_ids=torch.zeros_like(attention_mask),
        mm_token_type_ids=token_types,
        image_grid_thw=torch.tensor(images) if images else None,
        video_grid_thw=torch.tensor([v[:3] for v in videos]) if videos else None,
        second_per_grid_ts=torch.tensor([v[3] for v in videos], dtype=torch.float32) if videos else None,
        attention_mask=attention_mask,
    )


def test_patched_rope_index_batches_rows_by_vllms_rule(tiny_model_dir):
    model = hf_model(tiny_model_dir)
    rows, inputs = batch_inputs(["text, video, text", "image then video", "two videos, back to back"])
    position_ids, deltas = model.get_rope_index(**inputs)
    assert position_ids.shape == (3, len(rows), inputs["attention_mask"].shape[1])
    for i, (types, _, images, videos) in enumerate(rows):
        expected = patches.vllm_mrope_positions(types, iter(images), iter(videos), MERGE, TOKENS_PER_SECOND)
        assert position_ids[:, i, : len(types)].tolist() == expected.tolist()
        assert deltas[i].item() == expected.max() + 1 - len(types)  # what generation continues from


def test_transformers_rope_index_differs_for_video_but_not_for_images(tiny_model_dir):
    model = hf_model(tiny_model_dir)
    upstream = patches.UPSTREAM["Qwen2_5_VLModel.get_rope_index"]
    _, video = batch_inputs(["slow video, long in time"])
    assert not torch.equal(upstream(model, **video)[0], model.get_rope_index(**video)[0])
    # an image's extent in time is 1: both rules agree, so the patch leaves image training as it was
    _, images = batch_inputs(["image then video"])
    types = images["mm_token_type_ids"][:, :12]  # text, the image, text: stop before the video
    image_only = dict(input_ids=torch.zeros_like(types, dtype=torch.long), mm_token_type_ids=types,
                      image_grid_thw=images["image_grid_thw"], attention_mask=torch.ones_like(types))  # fmt: skip
    assert torch.equal(upstream(model, **image_only)[0], model.get_rope_index(**image_only)[0])


def test_rollout_engines_allow_one_video(monkeypatch):
    """RolloutRayActor.__init__ hands vLLM `limit_mm_per_prompt` with a video entry, keeping the image limit."""
    from openrlhf.trainer.ray import vllm_engine

    captured = {}

    class Captured(Exception):
        pass

    def engine_args(*args, **kwargs):
        captured.update(kwargs)
        raise Captured  # stop before an engine starts

    monkeypatch.setattr(vllm_engine.vllm, "AsyncEngineArgs", engine_args)
    monkeypatch.setenv("RAY_ADDRESS", "no-ray-in-this-test")  # else upstream asks Ray for its address
    cls = patches._rollout_actor_class()
    for init, expected in [
        (cls.__init__, {"image": 2, "video": 1}),
        (patches.UPSTREAM["RolloutRayActor.__init__"], {"image": 2}),
    ]:
        with pytest.raises(Captured):
            asyncio.run(init(cls.__new__(cls), model="m", num_gpus=1, limit_mm_per_prompt={"image": 2}))
        assert captured["limit_mm_per_prompt"] == expected


def test_video_metadata_reaches_the_hf_processor_when_vllm_parses_without_it(tiny_model_dir):
    """vLLM 0.29 parses Qwen2.5-VL videos as MultiModalDataParser(video_needs_metadata=False)
    does: frames for the HF processor, metadata kept aside. `with_video_metadata` hands it over, so
    the processor sees the real sampled rate (2 fps here) instead of assuming 24 fps."""
    import numpy as np
    from transformers import AutoProcessor
    from vllm.multimodal.parse import MultiModalDataParser

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    frames = np.zeros((8, 56, 84, 3), dtype=np.uint8)  # 8 frames taken at 2 fps from a 10 fps video
    metadata = dict(fps=10.0, duration=4.0, total_num_frames=40, frames_indices=list(range(0, 40, 5)),
                    do_sample_frames=False)  # fmt: skip
    items = MultiModalDataParser(video_needs_metadata=False).parse_mm_data({"video": [(frames, metadata)]})
    data = dict(items["video"].get_processor_data())
    prompt = ["<|vision_start|><|video_pad|><|vision_end|>"]
    for inputs, seconds_per_grid in [(patches.with_video_metadata(data, items), 2 / 2.0), (data, 2 / 24)]:
        out = processor(text=prompt, **inputs, return_tensors="pt")
        assert torch.as_tensor(out["second_per_grid_ts"]).tolist() == pytest.approx([seconds_per_grid])


GROUP_REWARDS = {"flat": [0.5] * 4, "spread": [0.0, 0.2, 0.6, 1.0], "nearly flat": [0.5, 0.5, 0.5, 0.52],
                 "replacement": [0.0, 1.0, 0.0, 1.0]}  # fmt: skip


class CannedExecutor:
    """Returns each prompt's rewards above, in turn, in OpenRLHF's response format."""

    def __init__(self):
        self.calls = {}

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        i = self.calls[prompt] = self.calls.get(prompt, -1) + 1
        reward = GROUP_REWARDS[prompt][i]
        return {"prompt": prompt, "label": label, "images": None, "mm_train_inputs": None,
                "observation_tokens": [1, 2, 3], "action_ranges": [(2, 3)], "rollout_log_probs": None,
                "truncated": False, "reward": reward, "scores": reward, "extra_logs": {}}  # fmt: skip


@pytest.mark.parametrize("patched", [True, False])
def test_reward_std_filter_runs_in_openrlhfs_dynamic_filter(patched, monkeypatch):
    """`--video.min_reward_std 0.05`: OpenRLHF's SamplesGenerator keeps groups whose reward std
    exceeds 0.05 and refills from the dataloader; upstream would keep the flat groups."""
    from openrlhf.trainer.ppo_utils import samples_generator

    from openrlhf_video.train import build, openrlhf_args

    argv, env = build(["--video.min_reward_std", "0.05", "--actor.model_name_or_path", "m", "--vllm.num_engines", "1",
                       "--rollout.n_samples_per_prompt", "4", "--actor.num_gpus_per_node", "1"])  # fmt: skip
    args = openrlhf_args(argv)
    monkeypatch.setenv(patches.MIN_REWARD_STD_ENV, env[patches.MIN_REWARD_STD_ENV])
    cls = patches._rollout_actor_class()
    generate_responses = cls.generate_responses if patched else patches.UPSTREAM["RolloutRayActor.generate_responses"]
    engine = SimpleNamespace(executor=CannedExecutor())  # a RolloutRayActor without its vLLM engine

    def dispatch(self, prompts, labels, images=None, **kwargs):  # the Ray call to an engine, run here
        return [
            asyncio.run(generate_responses(engine, prompt=prompt, label=label, sampling_params=None,
                                           max_length=16, hf_tokenizer=None, num_samples=4))
            for prompt, label in zip(prompts, labels)
        ]  # fmt: skip

    monkeypatch.setattr(samples_generator.SamplesGenerator, "_dispatch_prompts_to_vllm", dispatch)
    ray_stub = SimpleNamespace(wait=lambda refs, num_returns, timeout: (refs[:1], refs[1:]), get=lambda ref: ref)
    monkeypatch.setattr(samples_generator, "ray", ray_stub)
    generator = samples_generator.SamplesGenerator.__new__(samples_generator.SamplesGenerator)
    generator.args = args
    batches = iter(
        [(None, ["flat", "spread", "nearly flat"], ["", "", ""], [None] * 3), (None, ["replacement"], [""], [None])]
    )

    experiences, consumed, _ = generator._generate_vllm(batches, num_prompts=3, dynamic_filtering=True)
    kept = {e.prompts[0] for e in experiences}
    if patched:
        assert kept == {"spread", "replacement"} and consumed == 4
        spread = sorted(e.rewards.item() for e in experiences if e.prompts[0] == "spread")
        assert spread == pytest.approx(GROUP_REWARDS["spread"])  # the rewards themselves are untouched
    else:
        assert "flat" in kept


def test_weight_sync_resets_every_engines_caches_after_the_weights(monkeypatch):
    from openrlhf.trainer.ray.ppo_actor import ActorPPOTrainer

    events = []
    engine = SimpleNamespace(reset_prefix_cache=SimpleNamespace(remote=lambda: events.append("reset") or "ref"))

    def nccl_broadcast_stub(self):  # upstream's broadcast needs CUDA and NCCL; it only sends weights here
        events.append("weights")

    monkeypatch.setitem(patches.UPSTREAM, "ActorPPOTrainer.broadcast_to_vllm", nccl_broadcast_stub)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 0)
    monkeypatch.setattr("ray.get", lambda refs: refs)
    ActorPPOTrainer.broadcast_to_vllm(SimpleNamespace(vllm_engines=[engine, engine]))
    assert events == ["weights", "reset", "reset"]


def test_the_online_filter_uses_the_sample_std_as_selection_does():
    """ddof=1 online and offline (select.record_stats), so one threshold means the same in both:
    one right answer in four has sample std 0.5 (0.433 with ddof=0)."""
    responses = patches.group_std_as_scores([{"reward": r, "scores": r} for r in (0.0, 0.0, 0.0, 1.0)], min_std=0.45)
    assert [r["scores"] for r in responses] == [pytest.approx(0.5)] * 4
    assert responses[0]["extra_logs"]["group_reward_std"] == pytest.approx(0.5)


def test_qwen3_vl_language_model_config_builds_on_the_cpu_platform():
    """What vLLM's Qwen3-VL does first when it builds its language model: a config for the text
    sub-config, which names no architectures; on the CPU platform it raised IndexError upstream."""
    from vllm.config.model import ModelConfig
    from vllm.engine.arg_utils import EngineArgs

    from openrlhf_video.tiny_model import build_tiny_model

    config = EngineArgs(
        model=str(build_tiny_model("qwen3_vl")), dtype="float32", enforce_eager=True, max_model_len=2048
    ).create_engine_config()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            ModelConfig, "_get_transformers_backend_cls", patches.UPSTREAM["ModelConfig._get_transformers_backend_cls"]
        )
        with pytest.raises(IndexError):
            config.with_hf_config(config.model_config.hf_config.text_config)
    text = config.with_hf_config(config.model_config.hf_config.text_config)
    assert text.model_config.architectures == [] and not text.model_config.using_transformers_backend()

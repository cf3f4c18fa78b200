"""Video rollouts (openrlhf_video.rollout) through a real vLLM CPU engine, scored by OpenRLHF's
own Experience path and Actor: rollout and training log-probs must agree (GRPO's ratios), also
after the policy's vision tower changed and was synced into the engine. Every test runs for each
model family's tiny model (Qwen2.5-VL, Qwen3-VL, Qwen3.5).

Tolerances: 1e-4 where the engine runs fp32. Qwen3.5's engine runs bf16 (vLLM's CPU linear
attention accepts nothing else) against the fp32 training forward: its measured floor is ~3e-3,
so there 1e-2, still far below what the controls below produce (>= 0.1 there).

The weight-sync tests come last: they change the module's engine and actor.
"""

import asyncio
import dataclasses
import json
import re
import socket
import threading
from types import SimpleNamespace

import pytest
import torch

from openrlhf_video import families, patches
from openrlhf_video.cpu_grpo import MAX_LEN, InProcessEngine
from openrlhf_video.tiny_model import VISION_TOKENS, build_tiny_model


@pytest.fixture(scope="module", params=families.names())
def family(request):
    return families.get(request.param)


@pytest.fixture(scope="module")
def tiny_model_dir(family):
    return build_tiny_model(family.name)


@pytest.fixture(scope="module")
def tolerance(family):
    """Rollout vs training: 1e-4 in fp32; the bf16 engine's floor is ~3e-3 (see the module doc)."""
    return 1e-4 if family.vllm_dtype == "float32" else 1e-2


@pytest.fixture(scope="module")
def control(family):
    """A gap a control must exceed: clearly above the family's tolerance."""
    return 1e-3 if family.vllm_dtype == "float32" else 5e-2


def needs_patch(family, patch):
    """Tests of a family-specific patch run for the families that need it."""
    if getattr(patches, patch) not in family.patches():
        pytest.skip(f"{family.name} does not need patches.{patch}")


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return InProcessEngine(tiny_model_dir)  # applies our patches; in-process vLLM CPU engine, fp32


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from openrlhf.utils import get_tokenizer

    return get_tokenizer(str(tiny_model_dir), None)  # what OpenRLHF hands executors: the processor


@pytest.fixture(scope="module")
def actor(tiny_model_dir):
    from openrlhf.models import Actor

    actor = Actor(str(tiny_model_dir), attn_implementation="sdpa", param_dtype="bf16")
    actor.model.float()  # the weights are bf16-exact: fp32 here computes with the engine's values
    return actor.eval()


@pytest.fixture(scope="module")
def rows(synthetic_data, processor):
    from openrlhf_video.data import VideoPromptDataset

    records = [json.loads(line) for line in (synthetic_data / "records.jsonl").read_text().splitlines()]
    return {row["id"]: row for row in VideoPromptDataset(records, processor, video_root=synthetic_data)}


def rollout(engine, processor, row, n=4, max_tokens=48):
    """n samples of one row through our AgentExecutor, as RolloutRayActor.generate_responses runs them."""
    from openrlhf_video.cpu_grpo import rollout as rollout_rows

    return rollout_rows(engine, processor, [row], n, max_tokens)[0]


def training_log_probs(actor, responses, pad_token_id):
    """The training side exactly as OpenRLHF 0.11.2 runs it: responses -> Experience
    (SamplesGenerator) -> one micro-batch -> merged mm inputs -> Actor.forward."""
    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.utils.vlm_utils import merge_mm_train_inputs

    samples = [SamplesGenerator._process_response_into_experience(None, r, max_len=MAX_LEN) for r in responses]
    batch = Experience.concat_experiences(samples, pad_token_id)
    with torch.no_grad():
        log_probs = actor(
            batch.sequences, batch.action_mask, batch.attention_mask,
            **merge_mm_train_inputs(batch.mm_train_inputs, "cpu"),
        )  # fmt: skip
    return batch, log_probs


def max_gap(batch, log_probs, rows=slice(None)):
    mask = batch.action_mask[rows].bool()
    return (log_probs[rows][mask] - batch.rollout_log_probs[rows][mask]).abs().max().item()


@pytest.fixture(scope="module")
def tvg_group(engine, processor, rows):
    return rollout(engine, processor, rows["synthetic/clip_000#tvg"])


def test_executor_returns_what_the_training_forward_needs(tvg_group, family, processor, rows):
    from openrlhf_video.data.frames import load_frames

    video_pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    vision_ids = set(processor.tokenizer.convert_tokens_to_ids(VISION_TOKENS))
    frames = load_frames(rows["synthetic/clip_000#tvg"]["video"]["path"])
    for response in tvg_group:
        mm = response["mm_train_inputs"]
        assert {"pixel_values_videos", "video_grid_thw"} <= set(mm)
        (start, end), tokens = response["action_ranges"][0], response["observation_tokens"]
        # expanded prompt: one <|video_pad|> per merged patch, none sampled in the reply
        assert tokens[:start].count(video_pad) == int(mm["video_grid_thw"].prod()) // 4
        assert not vision_ids & set(tokens[start:end])
        assert 0.0 <= response["reward"] <= 1.0 and response["extra_logs"]["video_failed"] == 0.0
        assert response["extra_logs"]["prompt_mismatch"] == 0.0
        assert len(response["rollout_log_probs"]) == end
        # the model's time axis follows the real sampled frames (2 per temporal patch)
        assert_times(model_times(processor, mm, tokens[:start]), frames)


def model_times(processor, mm_train_inputs, prompt_ids) -> list[float]:
    """When each temporal patch happens for the model, seconds: Qwen2.5-VL's patch starts from
    `second_per_grid_ts` (M-RoPE), Qwen3-VL's and Qwen3.5's `<t seconds>` text (the mean time of
    the patch's two frames, one decimal)."""
    if "second_per_grid_ts" in mm_train_inputs:
        (seconds,), t = mm_train_inputs["second_per_grid_ts"].tolist(), int(mm_train_inputs["video_grid_thw"][0, 0])
        return [i * seconds for i in range(t)]
    return [float(x) for x in re.findall(r"<([0-9.]+) seconds>", processor.tokenizer.decode(prompt_ids))]


def assert_times(times, frames, start=0.0):
    """The model's times are the sampled frames' (from `start`) within a frame's interval (the families
    take a patch's first frame or the mean of its two, the text one decimal); an assumed 24 fps is far off."""
    expected = frames.timestamps[::2] - start
    assert len(times) == len(expected) and times == pytest.approx(expected, abs=1 / frames.fps)


def test_executor_samples_at_the_settings_train_passes_it(processor, rows, monkeypatch):
    """`openrlhf-video train --video.fps/--video.total_pixels` reach the executor only through
    the environment of each Ray worker."""
    from openrlhf_video.data.frames import load_frames
    from openrlhf_video.rollout import AgentExecutor

    row = next(r for r in rows.values() if r["id"].endswith("#tvg"))
    monkeypatch.setenv("OPENRLHF_VIDEO_FPS", "1.0")
    monkeypatch.setenv("OPENRLHF_VIDEO_TOTAL_PIXELS", str(64 * 28 * 28))
    _, prompt_ids, mm_train_inputs, (frames, metadata) = AgentExecutor()._prepare(
        processor, row["prompt"], row["video"]
    )
    expected = load_frames(row["video"]["path"], fps=1.0, total_pixels=64 * 28 * 28)
    assert frames.shape == expected.frames.shape and metadata["fps"] == expected.video_fps
    assert_times(model_times(processor, mm_train_inputs, prompt_ids), expected)


def test_rollout_and_training_log_probs_match(tvg_group, actor, processor, tolerance):
    batch, log_probs = training_log_probs(actor, tvg_group, processor.pad_token_id)
    assert batch.action_mask.sum() >= 4 * 8  # the comparison covers real sampled tokens
    assert max_gap(batch, log_probs) <= tolerance


def odd_frames(video):
    """The video's frames less the last one: an odd count (the processors repeat the last frame)."""
    from openrlhf_video.data.frames import load_frames

    frames = load_frames(video["path"], clip=video.get("clip"))
    return dataclasses.replace(
        frames, frames=frames.frames[:-1], frames_indices=frames.frames_indices[:-1], timestamps=frames.timestamps[:-1]
    )


def test_a_mixed_batch_matches_training(engine, actor, processor, rows, synthetic_data, tolerance, monkeypatch):
    """One micro-batch of videos of different lengths, a clip (its times start at the clip's start,
    as its label's do) and an odd frame count, every task, right-padded together."""
    from openrlhf_video import rollout as rollout_module
    from openrlhf_video.data import VideoPromptDataset
    from openrlhf_video.data.frames import load_frames

    records = [json.loads(line) for line in (synthetic_data / "records.jsonl").read_text().splitlines()]
    record = next(r for r in records if r["task"] == "tvg" and r["span"][0] >= 2.5)
    clip = [record["span"][0] - 1.5, min(record["duration"], record["span"][1] + 1.0)]
    (clip_row,) = VideoPromptDataset([dict(record, id="clip", clip=clip)], processor, video_root=synthetic_data)
    assert json.loads(clip_row["label"])["span"][0] == pytest.approx(record["span"][0] - clip[0])
    mixed = [rows[f"synthetic/clip_00{k}#{task}"] for k, task in ((3, "mcq"), (5, "gqa"), (6, "oeqa"))] + [clip_row]
    responses = [r for row in mixed for r in rollout(engine, processor, row, n=2, max_tokens=24)]

    odd_row = rows["synthetic/clip_007#tvg"]
    monkeypatch.setattr(rollout_module, "load_frames", lambda path, **kwargs: odd_frames(odd_row["video"]))
    odd = rollout(engine, processor, odd_row, n=2, max_tokens=24)
    monkeypatch.undo()
    assert len(odd_frames(odd_row["video"]).frames) % 2 == 1

    lengths = {len(r["observation_tokens"]) - (r["action_ranges"][0][1] - r["action_ranges"][0][0]) for r in responses}
    assert len(lengths) >= 3  # prompts of different lengths, so the batch is padded
    clip_response = responses[-2]
    times = model_times(processor, clip_response["mm_train_inputs"], clip_response["observation_tokens"])
    assert_times(times, load_frames(clip_row["video"]["path"], clip=clip), start=clip[0])  # clip-relative
    batch, log_probs = training_log_probs(actor, responses + odd, processor.pad_token_id)
    assert max_gap(batch, log_probs) <= tolerance


@pytest.mark.parametrize(
    "patch, clip",
    [("_get_hf_mm_data", "clip_001"), ("_get_cache_missing_items", "clip_002")],  # a video new to the processor cache
)
def test_rollout_log_probs_differ_without_each_vllm_metadata_patch(patch, clip, family, engine, actor, processor, rows):
    """vLLM 0.29 drops a video's metadata on either path, so the rollout runs at an assumed 24 fps."""
    needs_patch(family, "_patch_vllm_video_metadata")
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLMultiModalProcessor

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Qwen2_5_VLMultiModalProcessor, patch, patches.UPSTREAM[f"Qwen2_5_VLMultiModalProcessor.{patch}"])
            group = rollout(engine, processor, rows[f"synthetic/{clip}#tvg"])
    finally:  # the engine keeps this video's processor outputs and KV at 24 fps: later tests must not reuse them
        engine.llm.reset_mm_cache()
        engine.llm.reset_prefix_cache()
    batch, log_probs = training_log_probs(actor, group, processor.pad_token_id)
    assert max_gap(batch, log_probs) > 1e-3


def test_log_probs_differ_without_the_rope_index_patch(family, tvg_group, actor, processor, monkeypatch):
    needs_patch(family, "transformers_rope_index_as_trained")
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    monkeypatch.setattr(Qwen2_5_VLModel, "get_rope_index", patches.UPSTREAM["Qwen2_5_VLModel.get_rope_index"])
    batch, log_probs = training_log_probs(actor, tvg_group, processor.pad_token_id)
    assert max_gap(batch, log_probs) > 1e-3


def test_training_differs_or_fails_without_the_actor_patch(tvg_group, actor, processor, control, monkeypatch):
    """Without `mm_token_type_ids` Qwen2.5-VL silently drops its 3-D positions; Qwen3-VL and
    Qwen3.5 raise ("mm_token_type_ids is missing")."""
    from openrlhf.models import Actor

    monkeypatch.setattr(Actor, "forward", patches.UPSTREAM["Actor.forward"])
    try:
        batch, log_probs = training_log_probs(actor, tvg_group, processor.pad_token_id)
    except (ValueError, TypeError) as error:
        assert "mm_token_type_ids" in str(error)
    else:
        assert max_gap(batch, log_probs) > control


def test_the_guard_fails_loudly_when_vllm_got_another_prompt(engine, processor, rows, monkeypatch):
    """vLLM gets ids with one token changed before the video: the prompt it expands and generates from
    then differs from training's at that position. Raised under OPENRLHF_VIDEO_PROMPT_GUARD=raise
    (the tests' setting); otherwise counted and logged, and the sample carries `prompt_mismatch`."""
    from vllm import SamplingParams

    from openrlhf_video.rollout import AgentExecutor, PromptMismatch

    row = rows["synthetic/clip_005#tvg"]
    executor = AgentExecutor()
    vllm_ids, train_ids, mm, video = executor._prepare(processor, row["prompt"], row["video"])
    changed = [*vllm_ids[:3], vllm_ids[3] + 1, *vllm_ids[4:]]
    monkeypatch.setattr(executor, "_prepare", lambda *args: (changed, train_ids, mm, video))
    params = SamplingParams(max_tokens=4, logprobs=1)
    with pytest.raises(PromptMismatch, match="first difference at position 3"):
        asyncio.run(
            executor.execute(row["prompt"], row["label"], params, MAX_LEN, processor, engine, images=row["video"])
        )
    monkeypatch.setenv("OPENRLHF_VIDEO_PROMPT_GUARD", "log")
    executor = AgentExecutor()
    monkeypatch.setattr(executor, "_prepare", lambda *args: (changed, train_ids, mm, video))
    out = asyncio.run(
        executor.execute(row["prompt"], row["label"], params, MAX_LEN, processor, engine, images=row["video"])
    )
    assert out["extra_logs"]["prompt_mismatch"] == 1.0 and executor.prompt_mismatches == 1


def test_a_broken_video_is_a_counted_zero_reward_sample(engine, processor, actor, rows, tolerance, caplog):
    row = dict(rows["synthetic/clip_001#mcq"], video={"path": "/nonexistent/clip.mp4", "clip": None})
    with caplog.at_level("WARNING", logger="openrlhf_video.rollout"):
        broken = rollout(engine, processor, row, n=2)
    assert [r["reward"] for r in broken] == [0.0, 0.0]
    assert all(r["extra_logs"]["video_failed"] == 1.0 and r["mm_train_inputs"] is None for r in broken)
    assert sum("/nonexistent/clip.mp4" in m for m in caplog.messages) == 2  # logged with a running count
    # so is a prompt that leaves no room for the new tokens (upstream raises: the run would end)
    too_long = rollout(engine, processor, rows["synthetic/clip_001#mcq"], n=1, max_tokens=MAX_LEN)
    assert too_long[0]["reward"] == 0.0 and too_long[0]["extra_logs"]["video_failed"] == 1.0
    assert f"exceeds --data.max_len {MAX_LEN}" in caplog.text
    # it still trains alongside good samples: the same micro-batch goes through the forward
    good = rollout(engine, processor, rows["synthetic/clip_001#mcq"], n=2, max_tokens=8)
    batch, log_probs = training_log_probs(actor, broken + good, processor.pad_token_id)
    assert torch.isfinite(log_probs).all() and max_gap(batch, log_probs, rows=slice(2, None)) <= tolerance


def test_vision_tokens_are_never_sampled(engine, processor, rows):
    """A random policy samples <|video_pad|> & co. as text (the control without the ban shows it),
    which would break the training forward; the executor bans them."""
    from vllm import SamplingParams

    from openrlhf_video.data.frames import load_frames
    from openrlhf_video.rollout import video_inputs

    vision_ids = set(processor.tokenizer.convert_tokens_to_ids(VISION_TOKENS))
    row = rows["synthetic/clip_004#oeqa"]
    banned = rollout(engine, processor, row, n=8, max_tokens=64)
    assert all(not vision_ids & set(r["observation_tokens"][r["action_ranges"][0][0] :]) for r in banned)

    vllm_ids, _, _, video = video_inputs(processor, row["prompt"], load_frames(row["video"]["path"]))
    free = engine.llm.generate(
        {"prompt_token_ids": vllm_ids, "multi_modal_data": {"video": [video]}},
        SamplingParams(n=8, temperature=1.0, max_tokens=64, seed=0), use_tqdm=False,
    )[0]  # fmt: skip
    assert any(vision_ids & set(sample.token_ids) for sample in free.outputs)


# ---------------------------------------------------------------- weight sync (last)


def receive_weights(worker, port: int, specs: list):
    """CPU STAND-IN for OpenRLHF's `WorkerWrap.update_weight`, which allocates on "cuda", receives
    over NCCL and loads with `model.load_weights` (on vLLM's CPU build that fails: "'Parameter'
    object has no attribute 'weight_loader'"). Same protocol: one broadcast per parameter from
    trainer rank 0, over gloo here; then the in-place load that vLLM 0.29's `reload_weights` does,
    which like `load_weights` leaves every cache alone (`reload_weights` itself then also clears
    the worker's encoder cache, but not the scheduler's: the engine then hangs or dies on
    "Encoder cache miss")."""
    from vllm.distributed.utils import stateless_init_torch_distributed_process_group
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload

    group = stateless_init_torch_distributed_process_group("127.0.0.1", port, 1, 2, backend="gloo")
    weights = []
    for name, shape in specs:
        weight = torch.empty(shape, dtype=torch.float32)
        group.broadcast(weight, root=0).wait()
        weights.append((name, weight))
    model = worker.model_runner.get_model()
    initialize_layerwise_reload(model)
    model.load_weights(weights)
    finalize_layerwise_reload(model, worker.model_runner.model_config)


def sync_vision_tower(llm, model):
    """Trainer rank 0 broadcasts every vision-tower parameter (as broadcast_to_vllm does for each
    parameter it syncs) while the engine's worker receives them in `receive_weights`."""
    from vllm.distributed.utils import stateless_init_torch_distributed_process_group

    params = [(name, p) for name, p in model.named_parameters() if ".visual." in f".{name}"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def trainer():
        group = stateless_init_torch_distributed_process_group("127.0.0.1", port, 0, 2, backend="gloo")
        for _, param in params:
            group.broadcast(param.data.contiguous(), root=0).wait()

    sender = threading.Thread(target=trainer)
    sender.start()
    llm.collective_rpc(receive_weights, args=(port, [(name, tuple(p.shape)) for name, p in params]))
    sender.join()


def reset_caches(engine, method):
    """Run a RolloutRayActor cache-reset method on the in-process engine (it offers the AsyncLLM
    coroutines that method awaits)."""
    asyncio.run(method(SimpleNamespace(llm=engine)))


def perturb_vision_tower(model, seed: int):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "visual.merger" in name or "visual.patch_embed" in name:
                noise = torch.randn(param.shape, generator=generator) * param.std().clamp(min=0.02)
                param.add_(noise.to(torch.bfloat16).float())  # bf16-exact like the model's weights


def test_rollout_follows_synced_vision_weights(engine, actor, processor, rows, tolerance, control):
    row = rows["synthetic/clip_002#tvg"]
    rollout(engine, processor, row, n=2, max_tokens=24)  # the engine caches this video's embeddings
    old_state = {k: v.clone() for k, v in actor.model.state_dict().items()}

    perturb_vision_tower(actor.model, seed=1)
    sync_vision_tower(engine.llm, actor.model)
    reset_caches(engine, patches._rollout_actor_class().reset_prefix_cache)
    after = rollout(engine, processor, row, n=2, max_tokens=24)

    batch, log_probs = training_log_probs(actor, after, processor.pad_token_id)
    assert max_gap(batch, log_probs) <= tolerance
    # ...and the new weights matter: the old policy scores the same tokens differently
    new_state = {k: v.clone() for k, v in actor.model.state_dict().items()}
    actor.model.load_state_dict(old_state)
    try:
        _, old_log_probs = training_log_probs(actor, after, processor.pad_token_id)
    finally:
        actor.model.load_state_dict(new_state)
    assert (log_probs - old_log_probs)[batch.action_mask.bool()].abs().max() > control


def test_prefix_cache_reset_alone_leaves_the_old_vision_tower(engine, actor, processor, rows, control):
    """OpenRLHF's reset only: the next request with a known video is served from the encoder
    outputs of the old vision tower."""
    row = rows["synthetic/clip_002#tvg"]
    rollout(engine, processor, row, n=2, max_tokens=8)  # this video's embeddings are cached
    perturb_vision_tower(actor.model, seed=2)
    sync_vision_tower(engine.llm, actor.model)
    reset_caches(engine, patches.UPSTREAM["RolloutRayActor.reset_prefix_cache"])
    stale = rollout(engine, processor, row, n=2, max_tokens=24)
    batch, log_probs = training_log_probs(actor, stale, processor.pad_token_id)
    assert max_gap(batch, log_probs) > control

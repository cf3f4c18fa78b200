"""Every change openrlhf-video makes to upstream code, in one module.

OpenRLHF 0.11.2 trains VLMs on images only; with videos it is silently wrong in the places patched
below (measured in shared/ENVIRONMENT.md). Each patch names the upstream version and function it
changes and why, and has a test that fails without it (tests/test_patches.py, tests/test_rollout.py).

`lmms_eval_index_included_tasks_only()`, the one lmms-eval patch, and
`transformers_rope_index_as_trained()` are for `openrlhf-video eval`'s lmms-eval process.
`apply()` (the training patches) is idempotent and runs in the driver
(`openrlhf-video train`) and, as Ray's `worker_process_setup_hook`, in every Ray worker: patches
made in the driver alone do not reach the modules that workers import afresh (Actor,
ActorPPOTrainer, transformers).
"""

import os

import numpy as np

# Groups whose reward standard deviation is not above this are dropped (0 = filter off). An env var
# so that it reaches the rollout workers through Ray's runtime_env like the setup hook itself.
MIN_REWARD_STD_ENV = "OPENRLHF_VIDEO_MIN_REWARD_STD"
SETUP_HOOK = "openrlhf_video.patches.apply"
# "Class.attribute" -> the upstream function a patch replaced (tests put it back to show the gap).
UPSTREAM = {}


def _replace(owner, name: str, new) -> None:
    UPSTREAM[f"{owner.__name__}.{name}"] = getattr(owner, name)
    setattr(owner, name, new)


def vllm_mrope_positions(token_types, images, videos, spatial_merge_size: int, tokens_per_second: float):
    """(3, n) M-RoPE positions of one unpadded sequence by vLLM's rule (its
    `Qwen2_5_VLForConditionalGeneration.get_mrope_input_positions`, tested against vLLM 0.29's own
    code; the original Qwen2.5-VL rule, transformers 4.x's too).

    token_types: per token 0 text, 1 image, 2 video. images / videos: iterators over (t, h, w)
    grids and, for videos, (t, h, w, second_per_grid_ts), consumed in order. A vision item's grid
    is offset by the text position where it starts; the text after it continues from the largest
    position the item used + 1. Temporal indices are floor(t * seconds_per_grid * tokens_per_second)
    in float64, as vLLM computes them.
    """
    n = len(token_types)
    blocks, start, i = [], 0, 0
    while i < n:
        if token_types[i] == 0:
            j = i
            while j < n and token_types[j] == 0:
                j += 1
            blocks.append(np.broadcast_to(np.arange(j - i), (3, j - i)) + start)
            start += j - i
        else:
            if token_types[i] == 1:
                (t, h, w), t_factor = next(images), 1.0
            else:
                t, h, w, seconds = next(videos)
                t_factor = seconds * tokens_per_second
            grid = np.indices((t, h // spatial_merge_size, w // spatial_merge_size)).reshape(3, -1)
            if t_factor != 1.0:
                grid[0] = (grid[0] * t_factor).astype(np.int64)
            j = i + grid.shape[1]
            if j > n or any(tt != token_types[i] for tt in token_types[i:j]):
                raise ValueError(
                    f"vision tokens at {i}..{j} do not match the grid {(t, h, w)}: the prompt and the "
                    "pixel inputs disagree (a sampled <|video_pad|>, or a truncated prompt?)"
                )
            blocks.append(grid + start)
            start = int(blocks[-1].max()) + 1
        i = j
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((3, 0), dtype=np.int64)


def qwen25vl_get_rope_index(
    self,
    input_ids,
    mm_token_type_ids,
    image_grid_thw=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    attention_mask=None,
    **kwargs,
):
    """Replaces transformers 5.15 `Qwen2_5_VLModel.get_rope_index` (same signature).

    transformers 5 advances text after a video by max(h, w) / merge, ignoring the video's length in
    time, while vLLM and Qwen2.5-VL's own code continue from the video's largest position + 1: the
    training forward then scores other positions than the rollout sampled with (|Δ log-prob| 0.13
    on 512 tokens of a real model, ~1e-2 on the tiny test model). Returns ((3, B, L) position ids,
    (B, 1) rope deltas) like the original; HF `generate` uses it too and then matches vLLM.
    """
    import torch

    vision = self.config.vision_config
    images = iter(image_grid_thw.tolist() if image_grid_thw is not None else [])
    video_grids = video_grid_thw.tolist() if video_grid_thw is not None else []
    seconds = second_per_grid_ts.tolist() if second_per_grid_ts is not None else [1.0] * len(video_grids)
    videos = iter([(*grid, float(s)) for grid, s in zip(video_grids, seconds)])

    batch, length = input_ids.shape
    position_ids = torch.zeros(3, batch, length, dtype=torch.long, device=input_ids.device)
    deltas = []
    for row in range(batch):
        keep = attention_mask[row].bool() if attention_mask is not None else torch.ones(length, dtype=torch.bool)
        positions = vllm_mrope_positions(
            mm_token_type_ids[row][keep].tolist(),
            images,
            videos,
            vision.spatial_merge_size,
            getattr(vision, "tokens_per_second", 1.0),
        )
        position_ids[:, row, keep.to(input_ids.device)] = torch.from_numpy(positions).to(input_ids.device)
        deltas.append(int(positions.max()) + 1 - positions.shape[1] if positions.size else 0)
    return position_ids, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def transformers_rope_index_as_trained():
    """transformers 5.15 `Qwen2_5_VLModel.get_rope_index` -> `qwen25vl_get_rope_index` (vLLM's rule,
    the original model's): for the training forward, and for `generate` in lmms-eval's process."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl

    _replace(modeling_qwen2_5_vl.Qwen2_5_VLModel, "get_rope_index", qwen25vl_get_rope_index)


def _patch_actor_forward():
    """OpenRLHF 0.11.2 `openrlhf.models.Actor.forward`: it passes the token-type mask as
    `mm_token_type_ids` only when `image_grid_thw` is among the inputs, else as `token_type_ids`
    (Gemma's name). Qwen2.5-VL ignores `token_type_ids`, so for video-only batches it silently
    drops its 3-D positions (Δ log-prob 0.09). Naming `image_grid_thw=None` picks the Qwen key."""
    from openrlhf.models import actor

    upstream = actor.Actor.forward

    def forward(self, sequences, *args, **mm_inputs):
        if "video_grid_thw" in mm_inputs:
            mm_inputs.setdefault("image_grid_thw", None)
        return upstream(self, sequences, *args, **mm_inputs)

    _replace(actor.Actor, "forward", forward)


def _rollout_actor_class():
    """The class Ray instantiates for `@ray.remote class RolloutRayActor`. When decorated, Ray copies
    every method into it (wrapped for tracing), so patching the class OpenRLHF wrote changes
    nothing; Ray pickles this one by value from the driver at the first `.remote()`."""
    from openrlhf.trainer.ray import vllm_engine

    return vllm_engine.RolloutRayActor.__ray_metadata__.modified_class


def _patch_vllm_engine():
    """OpenRLHF 0.11.2 `RolloutRayActor` (openrlhf/trainer/ray/vllm_engine.py):
    - `__init__`: engines get `limit_mm_per_prompt` for images only (with --data.max_images_per_prompt),
      and vLLM plans its multimodal memory (profiling, encoder cache) for 999 items of a modality it
      is not told about; we add {"video": 1}, what our prompts carry (keeping the image limit).
    - `reset_prefix_cache` (OpenRLHF's only cache reset after a weight sync): vLLM caches vision
      encoder outputs by video content, so after a sync it keeps generating from the old vision
      tower (and after `reload_weights` can die with "Encoder cache miss"); reset both caches.
    - `generate_responses` (one prompt's group): with a minimum reward std set, each sample's
      `scores` becomes its group's reward std, so OpenRLHF's own dynamic filter (group mean of
      `scores` strictly inside --algo.dynamic_filtering_range) becomes a variance filter. Upstream
      only tests the mean, which for continuous rewards (IoU) says nothing about signal.
    Patched in the driver, these reach the engines (see `_rollout_actor_class`)."""
    cls = _rollout_actor_class()
    upstream_init, upstream_generate = cls.__init__, cls.generate_responses

    async def __init__(self, *args, **kwargs):
        kwargs["limit_mm_per_prompt"] = {**(kwargs.get("limit_mm_per_prompt") or {}), "video": 1}
        await upstream_init(self, *args, **kwargs)

    async def reset_prefix_cache(self):
        await self.llm.reset_encoder_cache()
        await self.llm.reset_prefix_cache()

    async def generate_responses(self, *args, **kwargs):
        responses = await upstream_generate(self, *args, **kwargs)
        return group_std_as_scores(responses, float(os.environ.get(MIN_REWARD_STD_ENV, "0")))

    _replace(cls, "__init__", __init__)
    _replace(cls, "reset_prefix_cache", reset_prefix_cache)
    _replace(cls, "generate_responses", generate_responses)


def group_std_as_scores(responses: list[dict], min_std: float) -> list[dict]:
    """Write the group's reward std into every response's `scores` (see `_patch_vllm_engine`);
    a no-op when min_std is 0. The sample's own reward stays in `reward`."""
    if min_std <= 0 or len(responses) < 2:
        return responses
    std = float(np.std([float(r["reward"]) for r in responses], ddof=1))
    for response in responses:
        response["scores"] = std
        response["extra_logs"] = {**(response.get("extra_logs") or {}), "group_reward_std": std}
    return responses


def _patch_vllm_video_metadata():
    """vLLM 0.29.0 loses a `(frames, metadata)` video's metadata twice on its way to the HF processor,
    which then assumes 24 fps: `second_per_grid_ts` becomes 2/24 whatever the real sampling, so the
    model's time axis is wrong and the rollout's positions differ from the training forward's
    (max |Δ log-prob| 9e-3 on the tiny model, tests/test_rollout.py). Both are `Qwen2_5_VLMultiModalProcessor`
    methods inherited from `BaseMultiModalProcessor` (vllm/multimodal/processing/processor.py):
    - `_get_cache_missing_items` re-parses the videos the processor cache misses from their frames
      alone; we give the re-parsed items their metadata back;
    - `_get_hf_mm_data` hands the processor the frames but not the metadata its parser keeps aside;
      we pass it as `video_metadata`, as later vLLM versions do."""
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLMultiModalProcessor

    upstream_missing = Qwen2_5_VLMultiModalProcessor._get_cache_missing_items
    upstream_data = Qwen2_5_VLMultiModalProcessor._get_hf_mm_data

    def _get_cache_missing_items(self, cache, mm_data_items, mm_hashes):
        is_cached, missing_items = upstream_missing(self, cache, mm_data_items, mm_hashes)
        metadata = getattr(mm_data_items.get("video"), "metadata", None)
        if isinstance(metadata, list) and "video" in missing_items:
            missing_items["video"].metadata = [m for m, cached in zip(metadata, is_cached["video"]) if not cached]
        return is_cached, missing_items

    def _get_hf_mm_data(self, mm_items):
        processor_data, passthrough_data = upstream_data(self, mm_items)
        return with_video_metadata(processor_data, mm_items), passthrough_data

    _replace(Qwen2_5_VLMultiModalProcessor, "_get_cache_missing_items", _get_cache_missing_items)
    _replace(Qwen2_5_VLMultiModalProcessor, "_get_hf_mm_data", _get_hf_mm_data)


def with_video_metadata(processor_data: dict, mm_items) -> dict:
    """The HF processor's inputs plus `video_metadata` from vLLM's parsed video items, when every
    video came with metadata (vLLM's own profiling videos come without: left as they are)."""
    metadata = getattr(mm_items.get("video"), "metadata", None)
    if not processor_data.get("videos") or not isinstance(metadata, list) or None in metadata:
        return processor_data
    from transformers.video_utils import VideoMetadata

    video_metadata = [VideoMetadata(**{k: v for k, v in m.items() if k != "do_sample_frames"}) for m in metadata]
    return {**processor_data, "video_metadata": video_metadata}


def _patch_weight_sync():
    """OpenRLHF 0.11.2 `ActorPPOTrainer.broadcast_to_vllm` resets the vLLM prefix cache only with
    --vllm.enable_prefix_caching, and fires it before the new weights arrive. A stale encoder
    cache serves the old vision tower's embeddings whatever that flag says: after every sync, reset
    the encoder and prefix caches of every engine (see `_patch_vllm_engine`)."""
    from openrlhf.trainer.ray import ppo_actor

    def broadcast_to_vllm(self):
        import ray
        import torch

        UPSTREAM["ActorPPOTrainer.broadcast_to_vllm"](self)
        if self.vllm_engines and torch.distributed.get_rank() == 0:
            ray.get([engine.reset_prefix_cache.remote() for engine in self.vllm_engines])

    _replace(ppo_actor.ActorPPOTrainer, "broadcast_to_vllm", broadcast_to_vllm)


def _patch_vllm_cpu_text_config_architectures():
    """vLLM 0.29.0 `ModelConfig._get_transformers_backend_cls` (vllm/config/model.py) reads
    `self.architectures[0]`. Qwen3-VL builds its language model with `vllm_config.with_hf_config(
    config.text_config)`, whose copied model config has no architectures (checkpoints give none for
    `qwen3_vl_text`, and transformers 5.15 maps no causal-LM class to it), and the CPU platform's
    `check_and_update_config` then asks `use_mla` -> `using_transformers_backend()`: IndexError,
    the engine never starts (CPU build only; GPU platforms do not ask there). With no architectures
    the config names no Transformers-backend class either: we answer None, so the check says
    "not the Transformers backend", which is true (the engine runs vLLM's own Qwen3-VL)."""
    from vllm.config.model import ModelConfig

    upstream = ModelConfig._get_transformers_backend_cls

    def _get_transformers_backend_cls(self):
        return upstream(self) if self.architectures else None

    _replace(ModelConfig, "_get_transformers_backend_cls", _get_transformers_backend_cls)


def lmms_eval_index_included_tasks_only() -> None:
    """lmms-eval 0.7.3 `TaskManager.__init__` indexes all ~2000 of its own task YAMLs on every run
    (~4.6 s on two cores) and has no flag to skip them. A run of our `rlt_` tasks needs only
    --include_path's: `include_defaults` now defaults to False. `openrlhf-video eval` applies it
    in the lmms-eval process only when every task asked for is ours."""
    from lmms_eval.tasks import TaskManager

    upstream = TaskManager.__init__

    def __init__(self, *args, include_defaults: bool = False, **kwargs):
        upstream(self, *args, include_defaults=include_defaults, **kwargs)

    _replace(TaskManager, "__init__", __init__)


def apply() -> None:
    """Apply every training patch, once per process. Runs as Ray's worker_process_setup_hook too."""
    if "Actor.forward" in UPSTREAM:
        return
    from openrlhf_video import families

    # each once: families share patches (Qwen3.5 builds on Qwen3-VL), and a second application
    # would record the patched function as upstream's
    for patch in dict.fromkeys(patch for family in families.all_families() for patch in family.patches()):
        patch()
    _patch_actor_forward()
    _patch_vllm_engine()
    _patch_weight_sync()
